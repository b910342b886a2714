import pg from 'pg';
import { DeliveryMetrics } from '../src/delivery/delivery.metrics.js';
import { TriggerMetrics } from '../src/triggers/triggers.metrics.js';
import { startTestApp, type TestApp } from './support/app.js';
import { within } from './support/built-app.js';
import { serverAvailable } from './support/database.js';
import { counterTotal, enqueueMany, LOCAL_CALLBACKS, registerBackend } from './support/deliveries.js';
import { bearer, type SeededTenant, seedTenant } from './support/fixtures.js';
import { eventually, TestReceiver } from './support/receiver.js';

const hasServer = await serverAvailable();

/** More than the test app's pool (DATABASE_POOL_SIZE=5): a connection leaked per cut would stall it. */
const CUTS = 6;

/**
 * "A replica's database connection cut mid-transaction", for the background workers: the
 * scheduler's batch and the delivery worker's result batch. As in database-outage.e2e-spec.ts, a
 * test connection holds a table lock the transaction needs for its last statement, the app's
 * backend waiting on it is terminated (pg_terminate_backend: what a database restart or failover
 * does to every session), and the work must still happen exactly once.
 */
describe.runIf(hasServer)("a worker's database connection cut mid-transaction", () => {
  let t: TestApp;
  let receiver: TestReceiver;
  let seed: SeededTenant;
  let databaseName: string;
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
    receiver = await TestReceiver.start();
    receiver.respond = () => ({ status: 200, body: '{"status":"success"}' });
    // A lease far longer than the test: whatever is sent again was not waiting for one to expire.
    t = await startTestApp({ env: { ...LOCAL_CALLBACKS, DELIVERY_LEASE_MS: '60000', DELIVERY_POLL_MS: '200' } });
    databaseName = new URL(t.database.url!).pathname.slice(1);
    seed = await seedTenant(t);
  });
  afterAll(async () => {
    for (const client of clients.splice(0)) await client.end().catch(() => undefined);
    // Bounded: a connection leaked by a cut transaction would make the pool's end wait forever.
    if (t) await within(t.close(), 20_000, 'closing the app');
    await receiver?.close();
  });

  /** Backends already terminated: one may linger in pg_stat_activity for a moment. */
  const cut = new Set<number>();
  /** Terminates the app's backend once it waits on a lock in a statement matching `pattern`. */
  const cutWhenBlocked = async (observer: pg.Client, pattern: string) => {
    const pid = await eventually(async () => {
      const { rows } = await observer.query<{ pid: number }>(
        `select pid from pg_stat_activity
          where datname = $1 and application_name = 'switchyard' and wait_event_type = 'Lock' and query ilike $2
            and not (pid = any($3::int[]))`,
        [databaseName, pattern, [...cut]],
      );
      return rows[0]?.pid;
    }, 10_000);
    cut.add(pid);
    const { rows } = await observer.query<{ ok: boolean }>('select pg_terminate_backend($1) as ok', [pid]);
    expect(rows[0].ok).toBe(true);
  };

  it('a scheduler batch cut at its last statement: each slot fires once, nothing half-written, the scheduler goes on', async () => {
    const observer = await connect();
    await t.http
      .post('/api/machine/register-backend')
      .set(bearer(seed.backendUser.token))
      .send({ name: 'cut-cron', callbackUrl: receiver.url('/cron'), runKeys: ['cut-cron'] })
      .expect(201);
    const triggers: { id: string; nextRunAt: string }[] = [];
    for (let index = 0; index < 10; index++) {
      const created = await t.http
        .post(`/api/applications/${seed.application.id}/triggers`)
        .set(bearer(seed.operatorUser.token))
        .send({ name: `every-second-${index}`, cronExpression: '* * * * * *', runKey: 'cut-cron' })
        .expect(201);
      triggers.push(created.body);
    }
    const ids = triggers.map((trigger) => trigger.id);
    await eventually(async () => {
      const { rows } = await observer.query<{ runs: string }>(
        'select count(*) as runs from trigger_runs where trigger_id = any($1::uuid[])',
        [ids],
      );
      return Number(rows[0].runs) >= 2 * triggers.length;
    });

    // A batch claims its triggers (FOR UPDATE, unaffected by a SHARE lock), writes their runs and
    // deliveries, and then waits here: its last statement, the UPDATE of next_run_at. Each cut
    // kills a transaction holding everything but that; the next one (the batch's triggers one by
    // one, or the next tick) blocks the same way and is cut in turn.
    const locker = await connect();
    await locker.query('begin');
    await locker.query('lock table cron_triggers in share mode');
    try {
      for (let count = 0; count < CUTS; count++) await cutWhenBlocked(observer, 'update cron_triggers%');
    } finally {
      await locker.query('rollback');
    }
    const releasedAt = Date.now();
    // The scheduler goes on: every trigger fires slots after the cuts.
    await eventually(async () => {
      const { rows } = await observer.query<{ late: string }>(
        `select count(distinct trigger_id) as late from trigger_runs
          where trigger_id = any($1::uuid[]) and scheduled_for > $2`,
        [ids, new Date(releasedAt + 1_000)],
      );
      return Number(rows[0].late) === triggers.length;
    }, 10_000);

    // next_run_at moved with the runs: one second after each trigger's latest run, read together.
    const { rows: heads } = await observer.query<{ next_run_at: Date; last: Date }>(
      `select c.next_run_at, max(r.scheduled_for) as last
         from cron_triggers c join trigger_runs r on r.trigger_id = c.id
        where c.id = any($1::uuid[])
        group by c.id`,
      [ids],
    );
    for (const head of heads) expect(head.next_run_at.getTime() - head.last.getTime()).toBe(1_000);

    const disabledAt = new Map<string, number>();
    for (const trigger of triggers) {
      await t.http
        .patch(`/api/triggers/${trigger.id}`)
        .set(bearer(seed.operatorUser.token))
        .send({ enabled: false })
        .expect(200);
      disabledAt.set(trigger.id, Date.now());
    }
    const { rows: runs } = await observer.query<{ id: string; trigger_id: string; scheduled_for: Date }>(
      `select id, trigger_id, scheduled_for from trigger_runs where trigger_id = any($1::uuid[])
        order by trigger_id, scheduled_for`,
      [ids],
    );
    await eventually(async () => {
      const { rows } = await observer.query<{ unfinished: string }>(
        `select count(*) as unfinished from deliveries where status <> 'SUCCEEDED'`,
      );
      return Number(rows[0].unfinished) === 0 && receiver.requests.length >= runs.length;
    }, 20_000);

    // Exactly once per (trigger, second), no second missing, before, during and after the cuts.
    const { rows: doubled } = await observer.query(
      'select trigger_id, scheduled_for from trigger_runs group by 1, 2 having count(*) > 1',
    );
    expect(doubled).toEqual([]);
    for (const trigger of triggers) {
      const seconds = runs.filter((run) => run.trigger_id === trigger.id).map((run) => run.scheduled_for.getTime());
      expect(seconds[0]).toBe(Date.parse(trigger.nextRunAt));
      const last = seconds[seconds.length - 1];
      expect(seconds).toEqual(Array.from({ length: (last - seconds[0]) / 1000 + 1 }, (_, i) => seconds[0] + i * 1000));
      expect(seconds[0]).toBeLessThan(releasedAt - 1_000);
      expect(last).toBeGreaterThan(disabledAt.get(trigger.id)! - 2_000);
    }
    // Every run has its one delivery and every delivery its run; each arrived once.
    const { rows: fanOut } = await observer.query<{ run_id: string; deliveries: string }>(
      `select r.id as run_id, count(d.id) as deliveries
         from trigger_runs r left join deliveries d on d.origin_id = r.id
        where r.trigger_id = any($1::uuid[]) group by r.id`,
      [ids],
    );
    expect(fanOut.filter((row) => row.deliveries !== '1')).toEqual([]);
    const { rows: orphans } = await observer.query(
      `select d.id from deliveries d where d.origin_type = 'trigger_run'
          and not exists (select 1 from trigger_runs r where r.id = d.origin_id)`,
    );
    expect(orphans).toEqual([]);
    const receipts = receiver.requests.map((request) => {
      const payload = JSON.parse(request.body) as { triggerId: string; executionTime: string };
      return `${payload.triggerId} ${payload.executionTime}`;
    });
    expect(receipts.length).toBe(new Set(receipts).size);
    expect(new Set(receipts)).toEqual(
      new Set(runs.map((run) => `${run.trigger_id} ${run.scheduled_for.toISOString().replace('.000Z', 'Z')}`)),
    );
    // A cut connection is the database's trouble, not a trigger's: none was set aside.
    expect(await counterTotal(t.app.get(TriggerMetrics).fireFailures)).toBe(0);
  }, 60_000);

  it('a delivery result batch cut mid-transaction: every result recorded once, nothing sent twice', async () => {
    const observer = await connect();
    receiver.requests.length = 0;
    // Answers take 2 s: long enough to take the lock while every attempt is still in flight.
    receiver.respond = () => ({ status: 200, body: '{"status":"success"}', delayMs: 2_000 });
    const backends = [];
    for (let index = 0; index < 4; index++) {
      backends.push(await registerBackend(t, seed.backendUser.token, `cut-${index}`, receiver.url(`/cut/${index}`)));
    }
    const enqueued = await enqueueMany(t, {
      tenantId: seed.tenant.id,
      backendIds: backends.map((backend) => backend.id),
      count: 40,
    });
    await receiver.waitFor(40);

    // The result batch logs its attempts, then blocks on marking the deliveries SUCCEEDED: cut
    // there. (The worker's next claim blocks on the same lock, and is left alone.)
    const locker = await connect();
    await locker.query('begin');
    await locker.query('lock table deliveries in share mode');
    try {
      await cutWhenBlocked(observer, `update deliveries d%SUCCEEDED%`);
    } finally {
      await locker.query('rollback');
    }

    // Written again, one by one, from what the worker still holds: nothing waits for a lease.
    await eventually(async () => {
      const { rows } = await observer.query<{ succeeded: string }>(
        `select count(*) as succeeded from deliveries where id = any($1::uuid[]) and status = 'SUCCEEDED'`,
        [enqueued.map((delivery) => delivery.id)],
      );
      return Number(rows[0].succeeded) === enqueued.length;
    }, 10_000);
    const { rows: attempts } = await observer.query<{ delivery_id: string; attempt: number; status_code: number }>(
      `select a.delivery_id, a.attempt, a.status_code from delivery_attempts a
        where a.delivery_id = any($1::uuid[])`,
      [enqueued.map((delivery) => delivery.id)],
    );
    // One attempt logged per delivery: the cut batch's inserts went with it.
    expect(attempts).toHaveLength(enqueued.length);
    expect(new Set(attempts.map((attempt) => attempt.delivery_id)).size).toBe(enqueued.length);
    expect(attempts.every((attempt) => attempt.attempt === 1 && attempt.status_code === 200)).toBe(true);
    expect(receiver.requests).toHaveLength(enqueued.length);
    expect(new Set(receiver.requests.map((request) => request.headers['webhook-id']))).toEqual(
      new Set(enqueued.map((delivery) => delivery.webhookId)),
    );
    expect(await counterTotal(t.app.get(DeliveryMetrics).attempts)).toBeGreaterThanOrEqual(enqueued.length);
  }, 60_000);
});
