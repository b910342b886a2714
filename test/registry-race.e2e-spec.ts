import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { startTestApp, type TestApp } from './support/app.js';
import { serverAvailable } from './support/database.js';
import { bearer, type SeededTenant, seedTenant } from './support/fixtures.js';

const CALLBACK = 'https://93.184.215.14/switchyard/webhook';
const uniqueName = () => `race-${randomBytes(4).toString('hex')}`;

// Racing needs concurrent connections, which the embedded PGlite fallback does not have (see
// test/support/database.ts); CI always has the server, and there this suite always runs.
const hasServer = await serverAvailable();

describe.runIf(hasServer)('concurrent first registrations of one name', () => {
  let t: TestApp;
  let a: SeededTenant;
  let sql: pg.Client;

  const register = (name: string, token = a.backendUser.token) =>
    t.http.post('/api/machine/register-backend').set(bearer(token)).send({ name, callbackUrl: CALLBACK });
  const count = async (query: string, params: unknown[]) =>
    Number((await sql.query<{ count: string }>(query, params)).rows[0].count);
  const backendsNamed = (name: string) =>
    count('select count(*) from backends where machine_user_id = $1 and name = $2', [
      a.backendUser.machineUser.id,
      name,
    ]);

  beforeAll(async () => {
    t = await startTestApp();
    a = await seedTenant(t);
    sql = new pg.Client({ connectionString: t.database.url! });
    await sql.connect();
  });
  afterAll(async () => {
    await sql.end();
    await t.close();
  });

  it('ten parallel registrations yield one backend: one 201 with the secret, nine 200 without', async () => {
    const name = uniqueName();
    const responses = await Promise.all(Array.from({ length: 10 }, () => register(name)));

    expect(responses.map((response) => response.status).sort()).toEqual([
      200, 200, 200, 200, 200, 200, 200, 200, 200, 201,
    ]);
    const ids = new Set(responses.map((response) => response.body.id));
    expect(ids.size).toBe(1);
    const withSecret = responses.filter((response) => 'signingSecret' in response.body);
    expect(withSecret.map((response) => response.status)).toEqual([201]);
    expect(await backendsNamed(name)).toBe(1);
    expect(await count('select count(*) from signing_secrets where owner_id = $1', [[...ids][0]])).toBe(1);
  });

  describe('a registration arriving while another one has inserted but not committed', () => {
    let holder: pg.Client;
    beforeEach(async () => {
      holder = new pg.Client({ connectionString: t.database.url! });
      await holder.connect();
    });
    afterEach(() => holder.end());

    /** Inserts the row the way a first registration does and leaves its transaction open. */
    async function holdUncommittedInsert(name: string): Promise<string> {
      const id = randomUUID();
      await holder.query('begin');
      await holder.query(
        `insert into backends (id, tenant_id, machine_user_id, name, callback_url, run_keys, enabled, created_at, updated_at)
         values ($1, $2, $3, $4, 'https://93.184.215.14/first', '{}', false, now(), now())`,
        [id, a.tenant.id, a.backendUser.machineUser.id, name],
      );
      return id;
    }

    /**
     * Starts the request and resolves once PostgreSQL shows it waiting on the held row lock. The
     * response comes back wrapped: an async function returning the bare promise would await it.
     */
    async function registerBlocked(name: string) {
      const response = register(name).then((result) => result);
      const deadline = Date.now() + 10_000;
      const waiting = () =>
        count(
          `select count(*) from pg_stat_activity
            where datname = current_database() and wait_event_type = 'Lock' and query ilike 'insert into%backends%'`,
          [],
        );
      while ((await waiting()) === 0) {
        if (Date.now() > deadline) throw new Error('the registration never waited for the uncommitted insert');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return { response };
    }

    it('waits for it to commit, then updates that backend (200) and re-enables it', async () => {
      const name = uniqueName();
      const heldId = await holdUncommittedInsert(name);
      const pending = await registerBlocked(name);
      await holder.query('commit');

      const response = await pending.response;
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({ id: heldId, callbackUrl: CALLBACK, enabled: true });
      expect(response.body).not.toHaveProperty('signingSecret');
      expect(await backendsNamed(name)).toBe(1);
    });

    it('inserts after all (201) when the other one rolls back', async () => {
      const name = uniqueName();
      const heldId = await holdUncommittedInsert(name);
      const pending = await registerBlocked(name);
      await holder.query('rollback');

      const response = await pending.response;
      expect(response.status).toBe(201);
      expect(response.body.id).not.toBe(heldId);
      expect(response.body.signingSecret).toMatch(/^whsec_/);
      expect(await backendsNamed(name)).toBe(1);
    });
  });
});
