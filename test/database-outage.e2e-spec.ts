import pg from 'pg';
import { startTestApp, type TestApp } from './support/app.js';
import { within } from './support/built-app.js';
import { serverAvailable } from './support/database.js';
import { adminAuth, uniqueSlug } from './support/fixtures.js';
import { eventually } from './support/receiver.js';

/** A request answers within the 5 s pool timeout plus slack: never a hang. */
const REQUEST_BOUND_MS = 8_000;

const hasServer = await serverAvailable();

/**
 * "A replica's database connection cut mid-transaction": the app's backend is terminated while
 * its transaction waits on a lock the test holds; nothing half-done may remain, and the same
 * request succeeds when retried.
 */
describe.runIf(hasServer)('a database connection cut mid-transaction', () => {
  let t: TestApp;
  let databaseName: string;
  let projectId: string;
  const clients: pg.Client[] = [];

  const connect = async () => {
    const client = new pg.Client({
      connectionString: t.database.url!,
      application_name: 'switchyard-test',
      connectionTimeoutMillis: 5_000,
    });
    await client.connect();
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    t = await startTestApp();
    databaseName = new URL(t.database.url!).pathname.slice(1);
    const slug = uniqueSlug('cut');
    const tenant = (await t.http.post('/api/tenants').set(adminAuth).send({ name: 'Cut', slug }).expect(201)).body;
    projectId = (
      await t.http
        .post(`/api/tenants/${tenant.id}/projects`)
        .set(adminAuth)
        .send({ name: 'Project', slug: 'project' })
        .expect(201)
    ).body.id;
  });

  afterAll(async () => {
    for (const client of clients.splice(0)) await client.end().catch(() => undefined);
    // Bounded: a connection leaked by a cut transaction would make the pool's end wait forever.
    if (t) await within(t.close(), 20_000, 'closing the app');
  });

  /** Starts the create, terminates its backend while it waits inside the transaction; returns its answer. */
  const cutMidTransaction = async (observer: pg.Client, slug: string) => {
    const locker = await connect();
    await locker.query('begin');
    // The app's transaction inserts the application, then blocks on the signing secret insert.
    await locker.query('lock table signing_secrets in access exclusive mode');
    const pending = t.http
      .post(`/api/projects/${projectId}/applications`)
      .set(adminAuth)
      .send({ name: 'Application', slug })
      .timeout(REQUEST_BOUND_MS * 2)
      .then(
        (response) => ({ response, error: null }),
        (error: Error) => ({ response: null, error }),
      );
    try {
      const pid = await eventually(async () => {
        const { rows } = await observer.query<{ pid: number }>(
          `select pid from pg_stat_activity
            where datname = $1 and application_name = 'switchyard' and wait_event_type = 'Lock'
              and query ilike '%signing_secrets%'`,
          [databaseName],
        );
        return rows[0]?.pid;
      }, 10_000);
      // Mid-transaction: the application row is written (uncommitted), the secret is not.
      const { rows } = await observer.query<{ ok: boolean }>('select pg_terminate_backend($1) as ok', [pid]);
      expect(rows[0].ok).toBe(true);
    } finally {
      await locker.query('rollback').catch(() => undefined);
      await locker.end().catch(() => undefined);
      clients.splice(clients.indexOf(locker), 1);
    }
    const { response, error } = await pending;
    if (!response) throw error;
    return response;
  };

  it('leaves no half-written application, answers 503 and the retry succeeds, however often it happens', async () => {
    const observer = await connect();
    // More cuts than the pool (DATABASE_POOL_SIZE=5) has connections: none may be leaked.
    for (let cut = 0; cut < 7; cut++) {
      const response = await cutMidTransaction(observer, 'cut-app');
      expect(response.status, JSON.stringify(response.body)).toBe(503);
      expect(response.body.code).toBe('UNAVAILABLE');
      expect(response.headers['retry-after']).toBe('1');
    }

    const { rows: half } = await observer.query<{ applications: string; orphans: string }>(
      `select (select count(*) from applications where project_id = $1) as applications,
              (select count(*) from applications a
                where not exists (select 1 from signing_secrets s
                                   where s.owner_type = 'application' and s.owner_id = a.id)) as orphans`,
      [projectId],
    );
    expect(half[0]).toEqual({ applications: '0', orphans: '0' });

    // The client's retry of the same request succeeds at once: the pool replaced the dead connections.
    const startedAt = Date.now();
    const retry = await t.http
      .post(`/api/projects/${projectId}/applications`)
      .set(adminAuth)
      .send({ name: 'Application', slug: 'cut-app' })
      .timeout(REQUEST_BOUND_MS);
    expect(retry.status, JSON.stringify(retry.body)).toBe(201);
    expect(Date.now() - startedAt).toBeLessThan(3_000);
    expect(retry.body.signingSecret).toEqual(expect.any(String));
    const { rows: secrets } = await observer.query<{ count: string }>(
      "select count(*) from signing_secrets where owner_type = 'application' and owner_id = $1",
      [retry.body.id],
    );
    expect(secrets[0].count).toBe('1');
  });
});
