import pg from 'pg';
import { startTestApp, type TestApp } from './support/app.js';
import { within } from './support/built-app.js';
import { createTestDatabase, serverAvailable, type TestDatabase } from './support/database.js';
import { enqueueOne, getDelivery, LOCAL_CALLBACKS, listenerCount, registerBackend, sql } from './support/deliveries.js';
import { bearer, seedTenant, type SeededTenant } from './support/fixtures.js';
import { eventually, TestReceiver } from './support/receiver.js';

/**
 * Graceful shutdown of a delivering replica (SPEC §6): stop claiming, let in-flight attempts
 * finish for SHUTDOWN_GRACE_MS, release the rest at once instead of leaving them to the lease.
 * Every instance shares one database; an API-only instance (no delivery worker, no scheduler) seeds
 * and enqueues, so the only sender is the worker instance under test.
 */
// Several instances on one database need a PostgreSQL server (the PGlite fallback serves one
// connection); CI always has one, and there this suite always runs.
const hasServer = await serverAvailable();

describe.runIf(hasServer)('delivery worker shutdown', () => {
  // Far longer than any wait below: a delivery that moves on did so through release, not expiry.
  const LEASE_MS = 60_000;
  let database: TestDatabase;
  let api: TestApp;
  let receiver: TestReceiver;
  let seed: SeededTenant;
  const workers = new Set<TestApp>();

  const startWorker = async (env: Record<string, string>) => {
    const worker = await startTestApp({
      database,
      env: { ...LOCAL_CALLBACKS, DELIVERY_LEASE_MS: String(LEASE_MS), DELIVERY_POLL_MS: '100', ...env },
    });
    workers.add(worker);
    return worker;
  };
  const stopWorker = async (worker: TestApp) => {
    workers.delete(worker);
    await worker.close();
  };
  const token = () => seed.backendUser.token;

  beforeAll(async () => {
    database = await createTestDatabase();
    receiver = await TestReceiver.start();
    api = await startTestApp({
      database,
      env: { ...LOCAL_CALLBACKS, DELIVERY_WORKER_ENABLED: 'false', SCHEDULER_ENABLED: 'false' },
    });
    seed = await seedTenant(api);
  });
  afterAll(async () => {
    // A failed test may leave workers running (deleting the current entry while iterating a Set is safe).
    for (const worker of workers) await stopWorker(worker);
    await api?.close();
    await receiver?.close();
    await database?.drop();
  });

  it('lets an in-flight attempt finish within the grace period and claims nothing new meanwhile', async () => {
    const backend = await registerBackend(api, token(), 'slow-answer', receiver.url('/slow'));
    receiver.respond = () => ({ status: 200, body: '{"status":"success"}', delayMs: 800 });
    const worker = await startWorker({ SHUTDOWN_GRACE_MS: '5000' });

    const inFlight = await enqueueOne(api, seed.tenant.id, backend.id, '{"n":1}');
    await receiver.waitFor(1);
    expect(await listenerCount(database.url!)).toBe(1);
    const closeStarted = Date.now();
    const closing = stopWorker(worker);
    // The worker stops its LISTEN connection right after it stops claiming: from then on a new
    // delivery must wait for another replica.
    await eventually(async () => (await listenerCount(database.url!)) === 0, 5_000);
    const queued = await enqueueOne(api, seed.tenant.id, backend.id, '{"n":2}');
    await closing;
    const closeMs = Date.now() - closeStarted;

    // Recorded before close() returned: the answer (800 ms after receipt) was waited for.
    const finished = await getDelivery(api, token(), inFlight.id);
    expect(finished).toMatchObject({ status: 'SUCCEEDED', attempts: 1, lastStatusCode: 200 });
    expect(finished.attemptLog.map((attempt) => attempt.statusCode)).toEqual([200]);
    expect(closeMs).toBeGreaterThanOrEqual(400);
    expect(closeMs).toBeLessThan(5_000);
    // Not claimed by the stopping worker: untouched, still due, never sent.
    expect(await getDelivery(api, token(), queued.id)).toMatchObject({ status: 'PENDING', attempts: 0 });
    expect(receiver.requests).toHaveLength(1);

    // The next replica picks it up.
    receiver.respond = () => ({ status: 200, body: '{"status":"success"}' });
    const next = await startWorker({});
    await receiver.waitFor(2);
    expect(receiver.requests[1].headers['webhook-id']).toBe(queued.webhookId);
    await eventually(async () => (await getDelivery(api, token(), queued.id)).status === 'SUCCEEDED');
    await stopWorker(next);
  });

  it('releases an attempt still running after the grace period, and another replica sends it at once', async () => {
    receiver.requests.length = 0;
    const backend = await registerBackend(api, token(), 'hanging', receiver.url('/hang'));
    receiver.respond = () => ({ hang: true });
    const worker = await startWorker({ SHUTDOWN_GRACE_MS: '300' });

    const enqueued = await enqueueOne(api, seed.tenant.id, backend.id, '{"n":3}');
    await receiver.waitFor(1);
    const leased = await sql<{ leased_until: Date }>(
      database.url!,
      'select leased_until from deliveries where id = $1',
      [enqueued.id],
    );
    expect(leased[0].leased_until.getTime()).toBeGreaterThan(Date.now() + LEASE_MS / 2);
    const closeStarted = Date.now();
    await stopWorker(worker);
    const released = Date.now();
    // Waited the grace period, then aborted: bounded, nowhere near the 10 s attempt timeout.
    expect(released - closeStarted).toBeGreaterThanOrEqual(300);
    expect(released - closeStarted).toBeLessThan(3_000);

    // Back in the queue the moment close() returned, due now, lease gone; the aborted attempt is
    // counted and logged.
    const pending = await getDelivery(api, token(), enqueued.id);
    expect(pending).toMatchObject({ status: 'PENDING', attempts: 1 });
    expect(new Date(pending.nextAttemptAt!).getTime()).toBeLessThanOrEqual(Date.now());
    expect(pending.attemptLog).toHaveLength(1);
    expect(pending.attemptLog[0]).toMatchObject({ statusCode: null, error: 'aborted' });
    const row = await sql<{ leased_until: Date | null; leased_by: string | null }>(
      database.url!,
      'select leased_until, leased_by from deliveries where id = $1',
      [enqueued.id],
    );
    expect(row[0]).toEqual({ leased_until: null, leased_by: null });

    // A replica started now delivers it within seconds; waiting for the 60 s lease would time out here.
    receiver.respond = () => ({ status: 200, body: '{"status":"success"}' });
    await startWorker({});
    await receiver.waitFor(2, 10_000);
    expect(receiver.requests[1].at - released).toBeLessThan(10_000);
    expect(receiver.requests.map((request) => request.headers['webhook-id'])).toEqual([
      enqueued.webhookId,
      enqueued.webhookId,
    ]);
    const delivered = await eventually(async () => {
      const delivery = await getDelivery(api, token(), enqueued.id);
      return delivery.status === 'SUCCEEDED' && delivery;
    });
    expect(delivered.attempts).toBe(2);
    expect(delivered.attemptLog.map((attempt) => attempt.statusCode)).toEqual([null, 200]);
  });

  it('stops claiming at once, even while its scheduler still waits for a batch under way', async () => {
    // The replica under test is the only one with a worker.
    for (const left of workers) await stopWorker(left);
    receiver.requests.length = 0;
    receiver.respond = () => ({ status: 200, body: '{"status":"success"}' });
    const backend = (
      await api.http
        .post('/api/machine/register-backend')
        .set(bearer(token()))
        .send({ name: 'draining', callbackUrl: receiver.url('/draining'), runKeys: ['draining'] })
        .expect(201)
    ).body as { id: string };
    const worker = await startWorker({ SHUTDOWN_GRACE_MS: '5000' });
    const trigger = (
      await api.http
        .post(`/api/applications/${seed.application.id}/triggers`)
        .set(bearer(seed.operatorUser.token))
        .send({ name: 'every-second', cronExpression: '* * * * * *', runKey: 'draining' })
        .expect(201)
    ).body as { id: string };
    await receiver.waitFor(1);

    // The worker's next scheduler batch blocks on writing its runs (a test transaction holds the
    // table); shutdown waits for that batch to commit before the connections close.
    const observer = new pg.Client({ connectionString: database.url!, application_name: 'switchyard-test' });
    const locker = new pg.Client({ connectionString: database.url!, application_name: 'switchyard-test' });
    await observer.connect();
    await locker.connect();
    try {
      await locker.query('begin');
      await locker.query('lock table trigger_runs in share mode');
      await eventually(async () => {
        const { rows } = await observer.query(
          `select pid from pg_stat_activity
            where datname = current_database() and application_name = 'switchyard' and wait_event_type = 'Lock'
              and query ilike 'insert into trigger_runs%'`,
        );
        return rows.length > 0;
      });
      const closing = stopWorker(worker);
      await new Promise((resolve) => setTimeout(resolve, 300));
      // While the scheduler drains, the delivery worker must already be idle: a delivery enqueued
      // now (NOTIFY included) stays queued for the next replica.
      const queued = await enqueueOne(api, seed.tenant.id, backend.id, '{"n":4}');
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(await getDelivery(api, token(), queued.id)).toMatchObject({ status: 'PENDING', attempts: 0 });
      await locker.query('rollback');
      await within(closing, 10_000, 'shutdown once the batch could commit');

      // The batch under way committed its slot: one run per second, none missing.
      const { rows: runs } = await observer.query<{ scheduled_for: Date }>(
        'select scheduled_for from trigger_runs where trigger_id = $1 order by scheduled_for',
        [trigger.id],
      );
      const seconds = runs.map((run) => run.scheduled_for.getTime());
      expect(seconds).toEqual(seconds.map((_, index) => seconds[0] + index * 1_000));
      expect(runs.length).toBeGreaterThanOrEqual(2);

      // The next replica sends what was left, the queued delivery among it.
      await startWorker({ SCHEDULER_ENABLED: 'false' });
      await eventually(async () =>
        receiver.requests.some((request) => request.headers['webhook-id'] === queued.webhookId),
      );
    } finally {
      await locker.end().catch(() => undefined);
      await observer.end().catch(() => undefined);
    }
  });
});
