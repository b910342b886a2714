import { TriggerMetrics } from '../src/triggers/triggers.metrics.js';
import { startTestApp, type TestApp } from './support/app.js';
import { createTestDatabase, serverAvailable, type TestDatabase } from './support/database.js';
import { counterTotal, LOCAL_CALLBACKS, sql } from './support/deliveries.js';
import { bearer, type SeededTenant, seedTenant } from './support/fixtures.js';
import { eventually, TestReceiver } from './support/receiver.js';

// Several instances on one database need a PostgreSQL server (the PGlite fallback serves one
// connection); CI always has one, and there this suite always runs.
const hasServer = await serverAvailable();

const REPLICAS = 3;
const TRIGGERS = 50;
const RUN_MS = 10_000;

interface Created {
  id: string;
  nextRunAt: string;
}

/**
 * SPEC §5: "a cron slot fires exactly once across all replicas". Three instances, each with its
 * own scheduler ticking every 250 ms against one database, share 50 every-second triggers for
 * 10 s. Every (trigger, second) must have exactly one run and reach the receiver exactly once,
 * and no second may be missing between a trigger's first slot and the moment it was disabled.
 */
describe.runIf(hasServer)('cron triggers on three replicas', () => {
  let database: TestDatabase;
  let receiver: TestReceiver;
  const replicas: TestApp[] = [];
  let seed: SeededTenant;

  beforeAll(async () => {
    database = await createTestDatabase();
    receiver = await TestReceiver.start();
    receiver.respond = () => ({ status: 200, body: '{"status":"success"}' });
    // A lease far longer than the run: no delivery may be re-sent because a lease ran out.
    const env = { ...LOCAL_CALLBACKS, DELIVERY_LEASE_MS: '300000', DELIVERY_POLL_MS: '200' };
    // One after the other: the first applies the migrations, and the others find them applied.
    for (let index = 0; index < REPLICAS; index++) replicas.push(await startTestApp({ database, env }));
    seed = await seedTenant(replicas[0]);
  });
  afterAll(async () => {
    for (const replica of replicas) await replica.close();
    await receiver?.close();
    await database?.drop();
  });

  it(`${TRIGGERS} every-second triggers for ${RUN_MS / 1000} s: one run and one receipt per (trigger, second), none missing`, async () => {
    await replicas[0].http
      .post('/api/machine/register-backend')
      .set(bearer(seed.backendUser.token))
      .send({ name: 'replicas', callbackUrl: receiver.url('/replicas'), runKeys: ['replicas'] })
      .expect(201);

    // Created through every replica in turn; each starts firing as soon as it exists.
    const triggers: Created[] = [];
    for (let index = 0; index < TRIGGERS; index++) {
      const response = await replicas[index % REPLICAS].http
        .post(`/api/applications/${seed.application.id}/triggers`)
        .set(bearer(seed.operatorUser.token))
        .send({ name: `every-second-${index}`, cronExpression: '* * * * * *', runKey: 'replicas' })
        .expect(201);
      triggers.push(response.body);
    }
    // The workload runs for a fixed time: this wait is the test's duration, not a guess at readiness.
    await new Promise((resolve) => setTimeout(resolve, RUN_MS));
    const disabledAt = new Map<string, number>();
    for (const [index, trigger] of triggers.entries()) {
      await replicas[index % REPLICAS].http
        .patch(`/api/triggers/${trigger.id}`)
        .set(bearer(seed.operatorUser.token))
        .send({ enabled: false })
        .expect(200);
      disabledAt.set(trigger.id, Date.now());
    }

    // Every run's delivery has arrived and been recorded; after that nothing more is sent.
    const [{ count: runCount }] = await sql<{ count: string }>(database.url!, 'select count(*) from trigger_runs');
    await eventually(async () => {
      const [row] = await sql<{ pending: string }>(
        database.url!,
        `select count(*) as pending from deliveries where status <> 'SUCCEEDED'`,
      );
      return Number(row.pending) === 0 && receiver.requests.length >= Number(runCount);
    }, 60_000);

    // Runs: never two for one (trigger, second).
    const doubled = await sql(
      database.url!,
      `select trigger_id, scheduled_for, count(*) from trigger_runs group by 1, 2 having count(*) > 1`,
    );
    expect(doubled).toEqual([]);
    const runs = await sql<{ trigger_id: string; scheduled_for: Date; manual: boolean }>(
      database.url!,
      'select trigger_id, scheduled_for, manual from trigger_runs order by trigger_id, scheduled_for',
    );
    expect(runs.every((run) => !run.manual)).toBe(true);

    // Receipts: never two for one (triggerId, executionTime), and exactly the runs' slots.
    const receipts = receiver.requests.map((request) => {
      const payload = JSON.parse(request.body) as { triggerId: string; executionTime: string };
      return `${payload.triggerId} ${payload.executionTime}`;
    });
    const distinctReceipts = new Set(receipts);
    const runKeys = runs.map((run) => `${run.trigger_id} ${run.scheduled_for.toISOString().replace('.000Z', 'Z')}`);
    expect(receipts.length - distinctReceipts.size).toBe(0);
    expect([...distinctReceipts].sort()).toEqual(runKeys.sort());

    // No missing second: each trigger fired its first slot (nextRunAt at creation) and every second
    // after it, up to within 2 s of being disabled (a tick every 250 ms, plus the disabling PATCH).
    for (const trigger of triggers) {
      const seconds = runs.filter((run) => run.trigger_id === trigger.id).map((run) => run.scheduled_for.getTime());
      expect(seconds[0]).toBe(Date.parse(trigger.nextRunAt));
      const last = seconds[seconds.length - 1];
      expect(seconds).toEqual(Array.from({ length: (last - seconds[0]) / 1000 + 1 }, (_, i) => seconds[0] + i * 1000));
      expect(last).toBeLessThanOrEqual(disabledAt.get(trigger.id)!);
      expect(last).toBeGreaterThan(disabledAt.get(trigger.id)! - 2_000);
      expect(seconds.length).toBeGreaterThanOrEqual(RUN_MS / 1000);
    }

    // Who fired: each replica counts its own firings; together they made every run once. The first
    // replica to tick after a second's boundary claims all 50 due triggers of that second, and the
    // tick jitter makes that a different replica from second to second. Requiring all three would
    // fail ~3 % of runs by chance ((2/3)^11 per replica); two of three fails about once in 50,000.
    const perReplica = await Promise.all(
      replicas.map((replica) => counterTotal(replica.app.get(TriggerMetrics).fires)),
    );
    console.log(`cron replicas: ${runs.length} runs, fired per replica ${perReplica.join(' / ')}`);
    expect(perReplica.reduce((sum, count) => sum + count, 0)).toBe(runs.length);
    expect(perReplica.filter((count) => count > 0).length).toBeGreaterThanOrEqual(2);
  }, 120_000);
});
