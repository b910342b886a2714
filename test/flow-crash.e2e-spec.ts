import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { ADMIN_TOKEN, startTestApp, TEST_SECRETS_KEY, type TestApp } from './support/app.js';
import {
  type BuiltApp,
  ensureBuilt,
  freePort,
  killAll,
  spawnBuiltApp,
  waitUntilReady,
  within,
} from './support/built-app.js';
import { createTestDatabase, serverAvailable, type TestDatabase } from './support/database.js';
import { LOCAL_CALLBACKS, registerBackend, sql } from './support/deliveries.js';
import { bearer, seedTenant, type SeededTenant } from './support/fixtures.js';
import { eventually, TestReceiver } from './support/receiver.js';

// A built service in its own process and in-process instances on one database need a PostgreSQL
// server (the PGlite fallback serves one connection); CI always has one, and there this suite runs.
const hasServer = await serverAvailable();

const TIMEOUT_MS = 2_000;
const LEASE_MS = 3_000;
/** Every instance of these tests: short attempts and leases, quick polling. */
const TIMINGS = {
  DELIVERY_TIMEOUT_MS: String(TIMEOUT_MS),
  DELIVERY_LEASE_MS: String(LEASE_MS),
  DELIVERY_POLL_MS: '100',
  SCHEDULER_TICK_MS: '100',
};

/**
 * SPEC §5: "nothing is lost if a replica is killed at any moment", for flows. The replica that
 * advances an execution runs as `node dist/src/main.js` (as in production) and is SIGKILLed in
 * the middle of its work, so no shutdown hook runs: once while the webhook step's request is in
 * flight, once while the transaction advancing the execution is open with the row locked. The
 * in-process API instance never advances nor sends (SCHEDULER_ENABLED and
 * DELIVERY_WORKER_ENABLED off), so the child is the only one that can be doing the work when it
 * dies; a rescuer instance started afterwards has to finish it.
 */
describe.runIf(hasServer)('a replica killed while advancing an execution', () => {
  let database: TestDatabase;
  let api: TestApp;
  let receiver: TestReceiver;
  let seed: SeededTenant;
  let operator: Record<string, string>;
  let backendId: string;
  let cwd: string;
  const children: BuiltApp[] = [];
  const rescuers: TestApp[] = [];

  const spawnReplica = async () => {
    const replica = spawnBuiltApp(cwd, {
      ...LOCAL_CALLBACKS,
      ...TIMINGS,
      PORT: String(await freePort()),
      DATABASE_URL: database.url!,
      SECRETS_KEY: TEST_SECRETS_KEY,
      ADMIN_TOKEN,
      NODE_ENV: 'test',
      LOG_LEVEL: 'warn',
      MIGRATE_ON_START: 'true',
    });
    children.push(replica);
    await waitUntilReady(replica);
    return replica;
  };

  const kill = async (replica: BuiltApp) => {
    replica.child.kill('SIGKILL');
    expect(await within(replica.exited, 5_000, 'SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
  };

  /** A full replica (flow worker and delivery worker on), in process, started once the child is dead. */
  const startRescuer = async () => {
    const rescuer = await startTestApp({ database, env: { ...LOCAL_CALLBACKS, ...TIMINGS } });
    rescuers.push(rescuer);
    return rescuer;
  };

  beforeAll(async () => {
    ensureBuilt();
    database = await createTestDatabase();
    receiver = await TestReceiver.start();
    cwd = mkdtempSync(join(tmpdir(), 'switchyard-flow-crash-'));
    api = await startTestApp({
      database,
      env: { ...LOCAL_CALLBACKS, ...TIMINGS, SCHEDULER_ENABLED: 'false', DELIVERY_WORKER_ENABLED: 'false' },
    });
    seed = await seedTenant(api);
    operator = bearer(seed.operatorUser.token);
    backendId = (await registerBackend(api, seed.backendUser.token, 'flow-crash', receiver.url('/default'))).id;
  }, 120_000);
  afterEach(async () => {
    killAll(children);
    for (const rescuer of rescuers.splice(0)) await rescuer.close();
  });
  afterAll(async () => {
    killAll(children);
    await api?.close();
    await receiver?.close();
    await database?.drop();
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  async function createFlow(name: string, steps: unknown[]) {
    return (
      await api.http
        .post(`/api/applications/${seed.application.id}/flows`)
        .set(operator)
        .send({ name, steps })
        .expect(201)
    ).body as { id: string; steps: { name: string; triggerId?: string }[] };
  }

  const notify = (path: string) => ({
    type: 'webhook',
    name: 'Notify',
    backendId,
    invocationMethod: { url: receiver.url(path), body: { run: '{{ .run.id }}' } },
  });

  async function execution(id: string) {
    return (await api.http.get(`/api/executions/${id}`).set(operator).expect(200)).body as {
      status: string;
      context: { steps: Record<string, { data?: unknown }> };
      history: { type: string; step: string | null; detail: Record<string, unknown> | null }[];
    };
  }

  async function completed(id: string) {
    return eventually(async () => {
      const body = await execution(id);
      return body.status === 'completed' && body;
    }, 30_000);
  }

  const ofType = (history: { type: string }[], type: string) => history.filter((event) => event.type === type);

  it('SIGKILL while the webhook request is in flight: re-sent with the same webhook-id, the execution completes', async () => {
    const path = '/in-flight';
    const flow = await createFlow('crash-in-flight', [{ type: 'callback', name: 'Submitted' }, notify(path)]);
    // The child's attempt never gets an answer; the rescuer's is answered at once.
    let sent = 0;
    receiver.respond = (request) =>
      request.path === path && sent++ === 0 ? { hang: true } : { status: 200, body: '{"status":"success"}' };

    const child = await spawnReplica();
    const started = await api.http.post(`/api/flows/${flow.id}/executions`).set(operator).send({}).expect(201);
    const id: string = started.body.id;
    const mine = () => receiver.requests.filter((request) => request.path === path);
    await eventually(async () => mine().length === 1);
    await kill(child);

    // The child died holding the attempt: the step is mid-delivery, the delivery leased to nobody alive.
    const [row] = await sql<{ status: string; step_phase: string; awaiting_delivery_id: string }>(
      database.url!,
      'select status, step_phase, awaiting_delivery_id from executions where id = $1',
      [id],
    );
    expect(row).toMatchObject({ status: 'running', step_phase: 'delivering' });
    const [delivery] = await sql<{ status: string; attempts: number; webhook_id: string }>(
      database.url!,
      'select status, attempts, webhook_id from deliveries where id = $1',
      [row.awaiting_delivery_id],
    );
    expect(delivery).toMatchObject({ status: 'SENDING', attempts: 1 });

    await startRescuer();
    const done = await completed(id);
    const [lost, retried] = mine();
    expect(mine()).toHaveLength(2);
    expect(lost.headers['webhook-id']).toBe(delivery.webhook_id);
    expect(retried.headers['webhook-id']).toBe(delivery.webhook_id);
    expect(JSON.parse(retried.body)).toEqual({ run: id });
    // Not before the child's lease ran out: nobody raced the (possibly still alive) sender.
    expect(retried.at - lost.at).toBeGreaterThanOrEqual(LEASE_MS - 1_000);

    // One delivery for the step (retried, not re-enqueued), and the step completed once.
    expect(ofType(done.history, 'webhook_enqueued')).toHaveLength(1);
    expect(done.history.filter((event) => event.type === 'step_completed' && event.step === 'Notify')).toHaveLength(1);
    expect(done.history.at(-1)!.type).toBe('finish');
    const deliveries = await sql<{ status: string; attempts: number }>(
      database.url!,
      `select status, attempts from deliveries where origin_type = 'execution' and origin_id = $1`,
      [id],
    );
    expect(deliveries).toEqual([{ status: 'SUCCEEDED', attempts: 2 }]);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(mine()).toHaveLength(2);
  }, 60_000);

  it('SIGKILL with the advancing transaction open: it rolls back, another instance advances once', async () => {
    const path = '/mid-advance';
    receiver.respond = () => ({ status: 200, body: '{"status":"success"}' });
    const flow = await createFlow('crash-mid-advance', [
      { type: 'callback', name: 'Submitted' },
      { type: 'callback', name: 'Approve' },
      notify(path),
    ]);
    const approve = flow.steps[1].triggerId!;

    const child = await spawnReplica();
    const started = await api.http.post(`/api/flows/${flow.id}/executions`).set(operator).send({}).expect(201);
    const id: string = started.body.id;
    await eventually(async () => (await execution(id)).status === 'waiting');

    // Hold the child's advance inside its transaction: with `deliveries` locked against writes, the
    // webhook step's INSERT waits, after the claim (row locked) and before anything commits.
    const blocker = new pg.Client({ connectionString: database.url! });
    await blocker.connect();
    let stuck: { pid: number } | undefined;
    try {
      await blocker.query('begin');
      await blocker.query('lock table deliveries in share mode');

      // Activated through the child: the answer means the activation is committed.
      const activated = await fetch(
        `${child.baseUrl}/api/automation/flow/${flow.id}/trigger/${approve}/activate?execution=${id}`,
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"ok":true}' },
      );
      expect(activated.status).toBe(200);
      expect(activated.headers.get('x-execution-id')).toBe(id);

      // The child's flow worker (the only one running) claimed it and is stuck inserting the delivery.
      stuck = await eventually(async () => {
        const rows = await sql<{ pid: number }>(
          database.url!,
          `select pid from pg_stat_activity
            where datname = current_database() and wait_event_type = 'Lock' and query like 'insert into deliveries%'`,
        );
        return rows[0];
      });
      const locked = await sql(database.url!, 'select id from executions where id = $1 for update skip locked', [id]);
      expect(locked).toEqual([]);

      await kill(child);
    } finally {
      // Released only now: the dead child's backend finishes the INSERT, finds its client gone and
      // rolls the whole advance back, which frees the execution row.
      await blocker.query('commit');
      await blocker.end();
    }
    // The dead child's database session ends, and its locks with it.
    await eventually(async () => {
      const rows = await sql(database.url!, 'select pid from pg_stat_activity where pid = $1', [stuck!.pid]);
      return rows.length === 0;
    });
    expect(
      await sql(database.url!, 'select id from executions where id = $1 for update skip locked', [id]),
    ).toHaveLength(1);
    const [row] = await sql<{ status: string; step_index: number; step_phase: string | null }>(
      database.url!,
      'select status, step_index, step_phase from executions where id = $1',
      [id],
    );
    // Activated (committed) but not advanced (rolled back): due for any replica's worker.
    expect(row).toEqual({ status: 'running', step_index: 2, step_phase: null });
    expect(
      await sql(database.url!, `select id from deliveries where origin_type = 'execution' and origin_id = $1`, [id]),
    ).toEqual([]);
    expect(receiver.requests.filter((request) => request.path === path)).toEqual([]);

    await startRescuer();
    const done = await completed(id);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const received = receiver.requests.filter((request) => request.path === path);
    expect(received).toHaveLength(1);
    expect(JSON.parse(received[0].body)).toEqual({ run: id });
    expect(ofType(done.history, 'activate')).toHaveLength(1);
    expect(ofType(done.history, 'webhook_enqueued')).toHaveLength(1);
    expect(done.context.steps.Approve.data).toEqual({ ok: true });
    expect(done.history.at(-1)!.type).toBe('finish');
  }, 60_000);
});
