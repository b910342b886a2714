import { randomBytes, randomUUID } from 'node:crypto';
import { MikroORM } from '@mikro-orm/postgresql';
import { Clock } from '../src/common/clock.js';
import { FlowBridge } from '../src/triggers/flow-bridge.js';
import { FIRE_ALL_CAP } from '../src/triggers/misfire.js';
import { TriggerScheduler } from '../src/triggers/trigger-scheduler.js';
import { TriggerMetrics } from '../src/triggers/triggers.metrics.js';
import { startTestApp, type TestApp } from './support/app.js';
import { counterTotal } from './support/deliveries.js';
import { bearer, type SeededTenant, seedTenant } from './support/fixtures.js';
import { eventually, TestReceiver } from './support/receiver.js';

const THRESHOLD_MS = 10_000;

interface Run {
  id: string;
  triggerId: string;
  scheduledFor: string;
  firedAt: string;
  manual: boolean;
  outcome: string;
  deliveries: { id: string; backendId: string; status: string; attempts: number }[];
  executionId: string | null;
}

/**
 * What the scheduler does with time (misfires after an outage, DST in two zones), where a firing
 * goes (routing, outcomes), and the switches around it (disabled triggers, run-now).
 *
 * The app's own ticking is off (SCHEDULER_ENABLED=false): each test moves the injectable Clock and
 * calls TriggerScheduler.tick() itself, so which slots are due when is exact rather than a race
 * with a 250 ms interval. Deliveries still go out through the real worker to a local receiver.
 */
describe('cron trigger behaviour', () => {
  let t: TestApp;
  let a: SeededTenant;
  let b: SeededTenant;
  let clock: Clock;
  let receiver: TestReceiver;

  const token = () => a.operatorUser.token;
  const tick = () => t.app.get(TriggerScheduler).tick();
  const createTrigger = async (body: object) =>
    (
      await t.http
        .post(`/api/applications/${a.application.id}/triggers`)
        .set(bearer(token()))
        .send({ name: `trigger-${randomBytes(4).toString('hex')}`, runKey: 'unrouted.key', ...body })
        .expect(201)
    ).body as { id: string; nextRunAt: string | null };
  const getTrigger = async (id: string) =>
    (await t.http.get(`/api/triggers/${id}`).set(bearer(token())).expect(200)).body as {
      nextRunAt: string | null;
      enabled: boolean;
    };
  /** Every run of a trigger, oldest scheduled slot first. */
  const runsOf = async (id: string): Promise<Run[]> => {
    const runs: Run[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `&cursor=${cursor}` : '';
      const page = await t.http.get(`/api/triggers/${id}/runs?limit=200${query}`).set(bearer(token())).expect(200);
      runs.push(...page.body.items);
      cursor = page.body.nextCursor;
    } while (cursor);
    return runs.sort((x, y) => x.scheduledFor.localeCompare(y.scheduledFor));
  };
  const slotsOf = async (id: string) => (await runsOf(id)).map((run) => run.scheduledFor);
  const at = (iso: string) => clock.setTo(new Date(iso));
  const sql = <T>(text: string, params: unknown[] = []) => t.app.get(MikroORM).em.fork().execute<T[]>(text, params);
  const registerBackend = async (tenant: SeededTenant, path: string, runKeys: string[]) =>
    (
      await t.http
        .post('/api/machine/register-backend')
        .set(bearer(tenant.backendUser.token))
        .send({ name: `backend${path.replaceAll('/', '-')}`, callbackUrl: receiver.url(path), runKeys })
        .expect(201)
    ).body as { id: string };
  const receivedAt = (path: string) => receiver.requests.filter((request) => request.path === path);

  beforeAll(async () => {
    receiver = await TestReceiver.start();
    t = await startTestApp({
      env: {
        SCHEDULER_ENABLED: 'false',
        MISFIRE_THRESHOLD_MS: String(THRESHOLD_MS),
        ALLOW_HTTP_CALLBACKS: 'true',
        CALLBACK_ALLOWED_HOSTS: '127.0.0.1',
        DELIVERY_POLL_MS: '50',
        // One retry, an hour away: a failed first attempt leaves the delivery PENDING for the whole test.
        DELIVERY_RETRY_SCHEDULE: '0,1h',
      },
    });
    [a, b] = [await seedTenant(t), await seedTenant(t)];
    clock = t.app.get(Clock);
  });
  // Each test's triggers go with it, so a later tick (the clock jumps back and forth between
  // tests) never fires a trigger another test left behind.
  afterEach(async () => {
    await sql('delete from cron_triggers');
  });
  afterAll(async () => {
    await t.close();
    await receiver.close();
  });

  describe('misfire policies after an outage', () => {
    // The clock stands at :30 past a minute; a minutely trigger's next slot is 30 s away. Moving
    // the clock 5 minutes on is an outage of 5 slots, each at least 30 s (> THRESHOLD_MS) late.
    const outage = async (misfirePolicy: string, cronExpression = '* * * * *') => {
      at('2026-06-01T12:00:30.000Z');
      const trigger = await createTrigger({ cronExpression, misfirePolicy });
      expect(trigger.nextRunAt).toBe('2026-06-01T12:01:00.000Z');
      clock.advance(5 * 60_000);
      await tick();
      return trigger;
    };

    it('skip: no run at all, and the next run is in the future', async () => {
      const trigger = await outage('skip');
      expect(await runsOf(trigger.id)).toEqual([]);
      expect((await getTrigger(trigger.id)).nextRunAt).toBe('2026-06-01T12:06:00.000Z');
      expect(Date.parse((await getTrigger(trigger.id)).nextRunAt!)).toBeGreaterThan(clock.now().getTime());
    });

    it('fire_once: exactly one run, for the latest missed slot; then the schedule goes on', async () => {
      const trigger = await outage('fire_once');
      const runs = await runsOf(trigger.id);
      expect(runs).toEqual([
        expect.objectContaining({ scheduledFor: '2026-06-01T12:05:00.000Z', manual: false, outcome: 'UNROUTED' }),
      ]);
      expect((await getTrigger(trigger.id)).nextRunAt).toBe('2026-06-01T12:06:00.000Z');

      at('2026-06-01T12:06:01.000Z');
      await tick();
      expect(await slotsOf(trigger.id)).toEqual(['2026-06-01T12:05:00.000Z', '2026-06-01T12:06:00.000Z']);
    });

    it('fire_all: every missed slot, once', async () => {
      const trigger = await outage('fire_all');
      expect(await slotsOf(trigger.id)).toEqual([
        '2026-06-01T12:01:00.000Z',
        '2026-06-01T12:02:00.000Z',
        '2026-06-01T12:03:00.000Z',
        '2026-06-01T12:04:00.000Z',
        '2026-06-01T12:05:00.000Z',
      ]);
      // A second pass over the same time finds nothing due: the slots are not fired again.
      await tick();
      expect(await runsOf(trigger.id)).toHaveLength(5);
    });

    it(`fire_all after a 10-minute outage of an every-second trigger: the most recent ${FIRE_ALL_CAP}, oldest first`, async () => {
      at('2026-06-01T12:00:00.500Z');
      const trigger = await createTrigger({ cronExpression: '* * * * * *', misfirePolicy: 'fire_all' });
      expect(trigger.nextRunAt).toBe('2026-06-01T12:00:01.000Z');
      clock.advance(10 * 60_000);
      const before = clock.now().getTime();
      await tick();
      const after = clock.now().getTime();

      const slots = (await slotsOf(trigger.id)).map((slot) => Date.parse(slot));
      expect(slots).toHaveLength(FIRE_ALL_CAP);
      // Consecutive seconds ending with the last slot due when the tick read the clock.
      for (let i = 1; i < slots.length; i++) expect(slots[i] - slots[i - 1]).toBe(1_000);
      const last = slots[slots.length - 1];
      expect(last).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000);
      expect(last).toBeLessThanOrEqual(after);
      expect(Date.parse((await getTrigger(trigger.id)).nextRunAt!)).toBe(last + 1_000);
      // They were written oldest first: one transaction appending to a table nothing else writes
      // to, so the heap order (ctid) is the insertion order.
      const inserted = await sql<{ scheduled_for: Date }>(
        'select scheduled_for from trigger_runs where trigger_id = ? order by ctid',
        [trigger.id],
      );
      expect(inserted.map((row) => new Date(row.scheduled_for).getTime())).toEqual(slots);
    });

    it('a late slot within MISFIRE_THRESHOLD_MS is on time: it fires even under skip', async () => {
      at('2026-06-01T12:00:30.000Z');
      const trigger = await createTrigger({ cronExpression: '* * * * *', misfirePolicy: 'skip' });
      at('2026-06-01T12:01:05.000Z');
      await tick();
      expect(await slotsOf(trigger.id)).toEqual(['2026-06-01T12:01:00.000Z']);

      // An outage ending just after a slot: the missed ones are skipped, the on-time one fires.
      at('2026-06-01T12:05:02.000Z');
      await tick();
      expect(await slotsOf(trigger.id)).toEqual(['2026-06-01T12:01:00.000Z', '2026-06-01T12:05:00.000Z']);
    });

    it('fire_once with a slot on time fires only that one, not the latest missed as well', async () => {
      at('2026-06-01T12:00:30.000Z');
      const trigger = await createTrigger({ cronExpression: '* * * * *', misfirePolicy: 'fire_once' });
      at('2026-06-01T12:05:03.000Z');
      await tick();
      expect(await slotsOf(trigger.id)).toEqual(['2026-06-01T12:05:00.000Z']);
    });
  });

  it('a busy second: 250 triggers due at once (several batches, fired side by side) each fire once in one tick', async () => {
    at('2026-06-02T08:00:30.000Z');
    const template = await createTrigger({ cronExpression: '* * * * *' });
    // 249 copies of the API-made row, due at the same minute: more than two claim batches of 100.
    await sql(
      `insert into cron_triggers (id, tenant_id, application_id, name, cron_expression, timezone, run_key, enabled,
                                  backend_id, flow_id, misfire_policy, next_run_at, created_at, updated_at)
       select gen_random_uuid(), tenant_id, application_id, name || '-' || i, cron_expression, timezone, run_key,
              enabled, backend_id, flow_id, misfire_policy, next_run_at, created_at, updated_at
         from cron_triggers, generate_series(1, 249) as i
        where id = ?`,
      [template.id],
    );
    at('2026-06-02T08:01:00.300Z');
    await tick();
    const fired = await sql<{ trigger_id: string; runs: string; slot: Date }>(
      `select trigger_id, count(*) as runs, min(scheduled_for) as slot from trigger_runs group by trigger_id`,
    );
    expect(fired).toHaveLength(250);
    for (const row of fired) {
      expect(Number(row.runs)).toBe(1);
      expect(new Date(row.slot).toISOString()).toBe('2026-06-02T08:01:00.000Z');
    }
    const [{ behind }] = await sql<{ behind: string }>(
      `select count(*) as behind from cron_triggers where next_run_at <> '2026-06-02T08:02:00Z'`,
    );
    expect(Number(behind)).toBe(0);
  });

  it('a trigger that cannot fire holds back none of the others: it stays due, pauses, and fires once it can', async () => {
    // A flow engine that refuses to start executions, standing in for any trigger-specific failure.
    const bridge = t.app.get(FlowBridge);
    const realFlows = bridge.flows;
    let flowsWork = false;
    bridge.register({
      flowExists: async () => true,
      startFromCron: async () => {
        if (!flowsWork) throw new Error('the flow engine refused');
        return randomUUID();
      },
    });
    const failuresBefore = await counterTotal(t.app.get(TriggerMetrics).fireFailures);
    try {
      at('2026-06-03T09:00:30.000Z');
      const failing = await createTrigger({ cronExpression: '* * * * *', flowId: randomUUID() });
      const others = [];
      for (let index = 0; index < 3; index++) others.push(await createTrigger({ cronExpression: '* * * * *' }));

      at('2026-06-03T09:01:00.200Z');
      await tick();
      for (const other of others) expect(await slotsOf(other.id)).toEqual(['2026-06-03T09:01:00.000Z']);
      expect(await runsOf(failing.id)).toEqual([]);
      expect((await getTrigger(failing.id)).nextRunAt).toBe('2026-06-03T09:01:00.000Z');
      expect(await counterTotal(t.app.get(TriggerMetrics).fireFailures)).toBe(failuresBefore + 1);

      // Within its pause it is left alone, even though it would now work.
      flowsWork = true;
      at('2026-06-03T09:01:30.000Z');
      await tick();
      expect(await runsOf(failing.id)).toEqual([]);

      // After the pause (60 s) it is claimed again; fire_once: the on-time slot, not the missed one.
      at('2026-06-03T09:02:05.000Z');
      await tick();
      const [run] = await runsOf(failing.id);
      expect(run).toMatchObject({ scheduledFor: '2026-06-03T09:02:00.000Z', outcome: 'FLOW_STARTED' });
      expect(run.executionId).toEqual(expect.any(String));
      for (const other of others) expect(await runsOf(other.id)).toHaveLength(2);
    } finally {
      if (realFlows) bridge.register(realFlows);
    }
  });

  describe('DST', () => {
    // The scheduler is walked across the night minute by minute (a tick per minute of clock), so
    // every instant around the transition is looked at; a slot fires when the tick after it runs.
    const walk = async (from: string, to: string) => {
      for (let instant = Date.parse(from); instant <= Date.parse(to); instant += 60_000) {
        clock.setTo(new Date(instant));
        await tick();
      }
    };

    it.each([
      {
        what: 'Europe/Berlin spring forward (02:00 CET → 03:00 CEST): 02:30 does not exist, fires at 03:00 CEST',
        cronExpression: '30 2 * * *',
        timezone: 'Europe/Berlin',
        start: '2026-03-28T23:00:00.000Z',
        end: '2026-03-29T03:00:00.000Z',
        fired: ['2026-03-29T01:00:00.000Z'],
        next: '2026-03-30T00:30:00.000Z',
      },
      {
        what: 'Europe/Berlin fall back (03:00 CEST → 02:00 CET): 02:30 happens twice, fires once',
        cronExpression: '30 2 * * *',
        timezone: 'Europe/Berlin',
        start: '2026-10-24T23:00:00.000Z',
        end: '2026-10-25T03:00:00.000Z',
        fired: ['2026-10-25T00:30:00.000Z'],
        next: '2026-10-26T01:30:00.000Z',
      },
      {
        what: 'America/New_York spring forward (02:00 EST → 03:00 EDT): 02:30 does not exist, fires at 03:00 EDT',
        cronExpression: '30 2 * * *',
        timezone: 'America/New_York',
        start: '2026-03-08T05:00:00.000Z',
        end: '2026-03-08T09:00:00.000Z',
        fired: ['2026-03-08T07:00:00.000Z'],
        next: '2026-03-09T06:30:00.000Z',
      },
      {
        what: 'America/New_York fall back (02:00 EDT → 01:00 EST): 01:30 happens twice, fires once',
        cronExpression: '30 1 * * *',
        timezone: 'America/New_York',
        start: '2026-11-01T04:00:00.000Z',
        end: '2026-11-01T08:00:00.000Z',
        fired: ['2026-11-01T05:30:00.000Z'],
        next: '2026-11-02T06:30:00.000Z',
      },
    ])('$what', async ({ cronExpression, timezone, start, end, fired, next }) => {
      at(start);
      const trigger = await createTrigger({ cronExpression, timezone });
      // Computed from the clock at creation: already the post-transition instant.
      expect(trigger.nextRunAt).toBe(fired[0]);
      await walk(start, end);
      expect(await slotsOf(trigger.id)).toEqual(fired);
      expect((await getTrigger(trigger.id)).nextRunAt).toBe(next);
    });

    it('an hourly trigger in Europe/Berlin follows elapsed time through the fall-back night: one run per real hour', async () => {
      at('2026-10-24T22:30:00.000Z');
      const trigger = await createTrigger({ cronExpression: '0 * * * *', timezone: 'Europe/Berlin' });
      await walk('2026-10-24T22:30:00.000Z', '2026-10-25T03:30:00.000Z');
      // 01:00, 02:00 (CEST), 02:00 (CET), 03:00 and 04:00 local: five real hours, five runs.
      expect(await slotsOf(trigger.id)).toEqual([
        '2026-10-24T23:00:00.000Z',
        '2026-10-25T00:00:00.000Z',
        '2026-10-25T01:00:00.000Z',
        '2026-10-25T02:00:00.000Z',
        '2026-10-25T03:00:00.000Z',
      ]);
    });
  });

  describe('routing and outcomes', () => {
    /** Moves the clock just past the trigger's next slot and ticks once: one scheduled firing. */
    const fireScheduled = async (triggerId: string): Promise<Run> => {
      const { nextRunAt } = await getTrigger(triggerId);
      clock.setTo(new Date(Date.parse(nextRunAt!) + 500));
      await tick();
      const runs = await runsOf(triggerId);
      expect(runs).toHaveLength(1);
      return runs[0];
    };
    const runOutcome = async (triggerId: string, runId: string) =>
      (await runsOf(triggerId)).find((run) => run.id === runId)!;

    it("a runKey reaches every enabled backend of the tenant with it, not a disabled one nor another tenant's", async () => {
      const runKey = `shared.${randomBytes(3).toString('hex')}`;
      const first = await registerBackend(a, '/rk/first', [runKey]);
      const second = await registerBackend(a, '/rk/second', ['something.else', runKey]);
      const disabled = await registerBackend(a, '/rk/disabled', [runKey]);
      await t.http
        .patch(`/api/machine/backends/${disabled.id}`)
        .set(bearer(a.backendUser.token))
        .send({ enabled: false })
        .expect(200);
      await registerBackend(b, '/rk/other-tenant', [runKey]);
      await registerBackend(a, '/rk/other-key', ['other.key']);

      const trigger = await createTrigger({ cronExpression: '0 * * * *', runKey });
      const run = await fireScheduled(trigger.id);
      expect(run.deliveries.map((delivery) => delivery.backendId).sort()).toEqual([first.id, second.id].sort());
      const delivered = await eventually(async () => {
        const current = await runOutcome(trigger.id, run.id);
        return current.outcome === 'DELIVERED' && current;
      });
      expect(delivered.deliveries.map((delivery) => delivery.status)).toEqual(['SUCCEEDED', 'SUCCEEDED']);
      expect(receivedAt('/rk/first')).toHaveLength(1);
      expect(receivedAt('/rk/second')).toHaveLength(1);
      // The deliveries were written with the run; nothing else was enqueued for anyone else.
      for (const path of ['/rk/disabled', '/rk/other-tenant', '/rk/other-key']) expect(receivedAt(path)).toEqual([]);
      const [{ count }] = await sql<{ count: string }>('select count(*) from deliveries where origin_id = ?', [run.id]);
      expect(Number(count)).toBe(2);
    });

    it('a backendId reaches that backend only, even when others listen on the runKey', async () => {
      const runKey = `by-id.${randomBytes(3).toString('hex')}`;
      await registerBackend(a, '/id/listener', [runKey]);
      const chosen = await registerBackend(a, '/id/chosen', []);
      const trigger = await createTrigger({ cronExpression: '0 * * * *', runKey, backendId: chosen.id });
      const run = await fireScheduled(trigger.id);
      // The worker may already be sending it: only the target is certain at this point.
      expect(run.deliveries.map((delivery) => delivery.backendId)).toEqual([chosen.id]);
      await eventually(async () => (await runOutcome(trigger.id, run.id)).outcome === 'DELIVERED');
      expect(receivedAt('/id/chosen')).toHaveLength(1);
      expect(receivedAt('/id/listener')).toEqual([]);
    });

    it('a backendId of a disabled backend makes a PARKED delivery, and the run FAILED', async () => {
      const parkedBackend = await registerBackend(a, '/id/parked', []);
      await t.http
        .patch(`/api/machine/backends/${parkedBackend.id}`)
        .set(bearer(a.backendUser.token))
        .send({ enabled: false })
        .expect(200);
      const trigger = await createTrigger({ cronExpression: '0 * * * *', backendId: parkedBackend.id });
      const run = await fireScheduled(trigger.id);
      expect(run.outcome).toBe('FAILED');
      expect(run.deliveries).toEqual([
        { id: expect.any(String), backendId: parkedBackend.id, status: 'PARKED', attempts: 0 },
      ]);
      expect(receivedAt('/id/parked')).toEqual([]);
    });

    it('no backend listening: the run is recorded as UNROUTED with no deliveries', async () => {
      const trigger = await createTrigger({
        cronExpression: '0 * * * *',
        runKey: `nobody.${randomBytes(3).toString('hex')}`,
      });
      const run = await fireScheduled(trigger.id);
      expect(run).toMatchObject({ outcome: 'UNROUTED', deliveries: [], manual: false, executionId: null });
    });

    it('outcome is PENDING while any delivery awaits a retry, FAILED once any is PARKED, DELIVERED when all succeed', async () => {
      const runKey = `mixed.${randomBytes(3).toString('hex')}`;
      await registerBackend(a, '/mixed/ok', [runKey]);
      const flaky = await registerBackend(a, '/mixed/flaky', [runKey]);
      receiver.respond = (request) =>
        request.path === '/mixed/flaky' ? { status: 500, body: 'down' } : { status: 200, body: '{"status":"success"}' };
      try {
        const trigger = await createTrigger({ cronExpression: '0 * * * *', runKey });
        const run = await fireScheduled(trigger.id);
        // The first attempt to the flaky one failed, its retry is an hour away: one SUCCEEDED, one PENDING.
        const pending = await eventually(async () => {
          const current = await runOutcome(trigger.id, run.id);
          const attempted = current.deliveries.every((delivery) => delivery.attempts === 1);
          const settled = !current.deliveries.some((delivery) => delivery.status === 'SENDING');
          return attempted && settled && current;
        });
        expect(pending.outcome).toBe('PENDING');
        expect(pending.deliveries.map((delivery) => delivery.status).sort()).toEqual(['PENDING', 'SUCCEEDED']);

        // 410 Gone parks the flaky backend's delivery (and disables the backend): some PARKED → FAILED.
        receiver.respond = () => ({ status: 410 });
        const replay = pending.deliveries.find((delivery) => delivery.backendId === flaky.id)!;
        // Bring the hour-away retry forward rather than wait for it.
        await sql(`update deliveries set next_attempt_at = now() where id = ?`, [replay.id]);
        const failed = await eventually(async () => {
          const current = await runOutcome(trigger.id, run.id);
          return current.outcome === 'FAILED' && current;
        });
        expect(failed.deliveries.map((delivery) => delivery.status).sort()).toEqual(['PARKED', 'SUCCEEDED']);
      } finally {
        receiver.respond = () => ({ status: 200, body: '{"status":"success"}' });
      }
    });
  });

  describe('disabled triggers', () => {
    it('stay silent while disabled; re-enabling starts from now, with no catch-up', async () => {
      at('2026-07-01T08:00:00.500Z');
      const trigger = await createTrigger({ cronExpression: '* * * * * *', misfirePolicy: 'fire_all' });
      await t.http.patch(`/api/triggers/${trigger.id}`).set(bearer(token())).send({ enabled: false }).expect(200);
      for (let second = 1; second <= 30; second++) {
        clock.advance(1_000);
        await tick();
      }
      expect(await runsOf(trigger.id)).toEqual([]);

      at('2026-07-01T08:10:00.500Z');
      const enabled = await t.http
        .patch(`/api/triggers/${trigger.id}`)
        .set(bearer(token()))
        .send({ enabled: true })
        .expect(200);
      expect(enabled.body.nextRunAt).toBe('2026-07-01T08:10:01.000Z');
      await tick();
      expect(await runsOf(trigger.id)).toEqual([]);
      at('2026-07-01T08:10:01.200Z');
      await tick();
      expect(await slotsOf(trigger.id)).toEqual(['2026-07-01T08:10:01.000Z']);
    });

    it('a trigger created disabled never fires', async () => {
      at('2026-07-01T09:00:00.000Z');
      const trigger = await createTrigger({ cronExpression: '* * * * * *', enabled: false });
      expect(trigger.nextRunAt).toBeNull();
      clock.advance(3_600_000);
      await tick();
      expect(await runsOf(trigger.id)).toEqual([]);
    });
  });

  describe('POST /api/triggers/:id/run', () => {
    it('answers 202 with a manual run for the current second and leaves nextRunAt alone', async () => {
      const backend = await registerBackend(a, '/manual/one', []);
      // Answered slowly, so the delivery cannot have succeeded by the time the 202 is written.
      receiver.respond = () => ({ status: 200, body: '{"status":"success"}', delayMs: 300 });
      at('2026-08-01T10:20:30.750Z');
      const trigger = await createTrigger({ cronExpression: '0 0 1 1 *', backendId: backend.id });
      expect(trigger.nextRunAt).toBe('2027-01-01T00:00:00.000Z');

      const response = await t.http.post(`/api/triggers/${trigger.id}/run`).set(bearer(token())).expect(202);
      expect(response.body).toEqual({
        id: expect.any(String),
        triggerId: trigger.id,
        scheduledFor: '2026-08-01T10:20:30.000Z',
        firedAt: expect.stringMatching(/^2026-08-01T10:20:3\d\.\d{3}Z$/),
        manual: true,
        outcome: 'PENDING',
        // PENDING, or already SENDING if the worker was quicker than the 202.
        deliveries: [
          {
            id: expect.any(String),
            backendId: backend.id,
            status: expect.stringMatching(/^(PENDING|SENDING)$/),
            attempts: expect.any(Number),
          },
        ],
        executionId: null,
      });
      expect((await getTrigger(trigger.id)).nextRunAt).toBe('2027-01-01T00:00:00.000Z');
      await eventually(async () => receivedAt('/manual/one').length === 1);
      expect(JSON.parse(receivedAt('/manual/one')[0].body).executionTime).toBe('2026-08-01T10:20:30Z');
      receiver.respond = () => ({ status: 200, body: '{"status":"success"}' });
      await eventually(async () => (await runsOf(trigger.id))[0].outcome === 'DELIVERED');
      const [listed] = await runsOf(trigger.id);
      expect(listed).toEqual({
        ...response.body,
        outcome: 'DELIVERED',
        deliveries: [expect.objectContaining({ status: 'SUCCEEDED', attempts: 1 })],
      });
    });

    it('fires a disabled trigger too, which stays disabled with no next run', async () => {
      const backend = await registerBackend(a, '/manual/disabled', []);
      at('2026-08-01T10:40:00.300Z');
      const trigger = await createTrigger({ cronExpression: '* * * * * *', backendId: backend.id, enabled: false });
      const response = await t.http.post(`/api/triggers/${trigger.id}/run`).set(bearer(token())).expect(202);
      expect(response.body).toMatchObject({ scheduledFor: '2026-08-01T10:40:00.000Z', manual: true });
      await eventually(async () => receivedAt('/manual/disabled').length === 1);
      clock.advance(5_000);
      await tick();
      expect(await getTrigger(trigger.id)).toMatchObject({ enabled: false, nextRunAt: null });
      expect((await runsOf(trigger.id)).map((run) => run.manual)).toEqual([true]);
      expect(receivedAt('/manual/disabled')).toHaveLength(1);
    });

    it('two run-nows in the same second both fire, and a scheduled run for that slot still fires', async () => {
      at('2026-08-01T10:59:59.100Z');
      const trigger = await createTrigger({ cronExpression: '0 * * * *' });
      at('2026-08-01T11:00:00.050Z');
      const first = await t.http.post(`/api/triggers/${trigger.id}/run`).set(bearer(token())).expect(202);
      const second = await t.http.post(`/api/triggers/${trigger.id}/run`).set(bearer(token())).expect(202);
      expect(first.body.id).not.toBe(second.body.id);
      for (const run of [first.body, second.body]) {
        expect(run).toMatchObject({ scheduledFor: '2026-08-01T11:00:00.000Z', manual: true, outcome: 'UNROUTED' });
      }
      // Manual runs do not take the slot: the scheduled firing of 11:00:00 happens as well, once.
      await tick();
      await tick();
      const runs = await runsOf(trigger.id);
      expect(runs.map((run) => [run.scheduledFor, run.manual]).sort()).toEqual([
        ['2026-08-01T11:00:00.000Z', false],
        ['2026-08-01T11:00:00.000Z', true],
        ['2026-08-01T11:00:00.000Z', true],
      ]);
    });
  });
});
