import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import { DeliveryService } from '../src/delivery/delivery.service.js';
import { startTestApp, TEST_SECRETS_KEY, type TestApp } from './support/app.js';
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
import { LOCAL_CALLBACKS, registerBackend } from './support/deliveries.js';
import { bearer, type SeededTenant, seedTenant } from './support/fixtures.js';
import { eventually, type ReceivedRequest, TestReceiver } from './support/receiver.js';

// Built services in processes of their own on one database need a PostgreSQL server (the PGlite
// fallback serves one connection); CI always has one, and there this suite always runs.
const hasServer = await serverAvailable();

/** Far longer than the test: a delivery that moves on did so through release, not lease expiry. */
const LEASE_MS = 60_000;
const GRACE_MS = 3_000;
/** Past the grace period, so whatever the stopping replica holds of it is released, not finished. */
const SLOW_MS = 6_000;
/** Within the grace period: the stopping replica finishes these. */
const MEDIUM_MS = 500;
/** Exit after SIGTERM: the grace period, then aborting, recording, closing (5 s is generous). */
const EXIT_BOUND_MS = GRACE_MS + 5_000;
/**
 * How long after SIGTERM the replica may still claim: the signal's way to a busy event loop, and
 * one claim already under way (shutdown waits for it, then sends what it leased).
 */
const CLAIM_SLACK_MS = 1_000;

interface AttemptRow {
  delivery_id: string;
  webhook_id: string;
  backend_id: string;
  created_at: Date;
  attempt: number;
  replica: string | null;
  at: Date;
  status_code: number | null;
  error: string | null;
}

/**
 * SPEC §6 "graceful shutdown: stop taking work, finish or release in-flight deliveries, exit",
 * on real processes under load. Three built replicas (`node dist/src/main.js`) share one database
 * and a steady stream of deliveries; one gets SIGTERM. Attempts are attributed to replicas by the
 * `replica` column of `delivery_attempts` (`host:pid`, from the lease token), and to receipts by
 * webhook-id and order (a delivery's k-th attempt is its k-th arrival: with no lease expiring,
 * attempts of one delivery never overlap).
 */
describe.runIf(hasServer)('SIGTERM to a replica under load', () => {
  let database: TestDatabase;
  let api: TestApp;
  let receiver: TestReceiver;
  let observer: pg.Client;
  let seed: SeededTenant;
  let cwd: string;
  const children: BuiltApp[] = [];
  /** Webhook-ids the slow receiver has seen: it answers only their first arrival slowly. */
  const seenSlow = new Set<string>();

  const spawnReplica = async (): Promise<BuiltApp> => {
    const replica = spawnBuiltApp(cwd, {
      ...LOCAL_CALLBACKS,
      PORT: String(await freePort()),
      DATABASE_URL: database.url!,
      SECRETS_KEY: TEST_SECRETS_KEY,
      NODE_ENV: 'test',
      LOG_LEVEL: 'info',
      DELIVERY_LEASE_MS: String(LEASE_MS),
      DELIVERY_POLL_MS: '200',
      SHUTDOWN_GRACE_MS: String(GRACE_MS),
      MIGRATE_ON_START: 'false',
    });
    children.push(replica);
    await waitUntilReady(replica);
    return replica;
  };
  const replicaName = (replica: BuiltApp) => `${hostname()}:${replica.child.pid}`;
  const query = async <T extends pg.QueryResultRow>(text: string, params: unknown[] = []) =>
    (await observer.query<T>(text, params)).rows;

  beforeAll(async () => {
    ensureBuilt();
    database = await createTestDatabase();
    cwd = mkdtempSync(join(tmpdir(), 'switchyard-shutdown-'));
    receiver = await TestReceiver.start();
    receiver.respond = (request) => {
      const success = { status: 200, body: '{"status":"success"}' };
      if (request.path.startsWith('/medium')) return { ...success, delayMs: MEDIUM_MS };
      if (request.path.startsWith('/slow')) {
        const webhookId = request.headers['webhook-id'] as string;
        if (seenSlow.has(webhookId)) return success;
        seenSlow.add(webhookId);
        return { ...success, delayMs: SLOW_MS };
      }
      return success;
    };
    // In-process, API only: it applies the migrations, seeds, enqueues and creates triggers, and
    // never sends or fires, so every attempt and every run comes from a built replica.
    api = await startTestApp({
      database,
      env: { ...LOCAL_CALLBACKS, DELIVERY_WORKER_ENABLED: 'false', SCHEDULER_ENABLED: 'false' },
    });
    seed = await seedTenant(api);
    observer = new pg.Client({ connectionString: database.url!, application_name: 'switchyard-test' });
    await observer.connect();
    await Promise.all([spawnReplica(), spawnReplica(), spawnReplica()]);
  }, 120_000);
  afterAll(async () => {
    killAll(children);
    await observer?.end().catch(() => undefined);
    await api?.close();
    await receiver?.close();
    await database?.drop();
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  /** Deliveries `replica` is sending right now (its name leads its lease tokens), and the database's clock. */
  const sendingBy = async (replica: BuiltApp) => {
    const [row] = await query<{ now: Date; held: { id: string; backend_id: string }[] | null }>(
      `select now(), (select json_agg(json_build_object('id', id, 'backend_id', backend_id)) from deliveries
                       where status = 'SENDING' and leased_by like $1) as held`,
      [`${replicaName(replica)}/%`],
    );
    return { at: row.now, held: row.held ?? [] };
  };

  /** switchyard_trigger_fires_total of one replica, summed over its labels. */
  const firesOf = async (replica: BuiltApp) => {
    const text = await (await fetch(`${replica.baseUrl}/metrics`)).text();
    return text
      .split('\n')
      .filter((line) => line.startsWith('switchyard_trigger_fires_total{'))
      .reduce((sum, line) => sum + Number(line.slice(line.lastIndexOf(' ') + 1)), 0);
  };

  /**
   * Sends SIGTERM, calls `meanwhile` while the replica winds down, then waits for the exit (code 0);
   * returns when the signal was sent and when the process was gone.
   */
  const terminate = async (replica: BuiltApp, meanwhile: () => Promise<void> = async () => undefined) => {
    const signalledAt = Date.now();
    replica.child.kill('SIGTERM');
    await meanwhile();
    const exit = await within(replica.exited, EXIT_BOUND_MS + 5_000, 'exit after SIGTERM');
    const exitedAt = Date.now();
    children.splice(children.indexOf(replica), 1);
    expect(exit, replica.stderr()).toEqual({ code: 0, signal: null });
    return { signalledAt, exitedAt };
  };

  it('stops claiming, finishes or releases what it holds, exits 0; every delivery arrives, none twice but the released', async () => {
    const stopping = children[0];
    const token = seed.backendUser.token;
    const fast = [];
    for (let index = 0; index < 6; index++)
      fast.push(await registerBackend(api, token, `fast-${index}`, receiver.url(`/fast/${index}`)));
    const medium = await registerBackend(api, token, 'medium', receiver.url('/medium'));
    const slow = await registerBackend(api, token, 'slow', receiver.url('/slow'));
    const streamed = [...fast, medium].map((backend) => backend.id);

    // The load: 50 deliveries every 100 ms (one in seven to the medium receiver) until told to stop,
    // each 50 with one INSERT and one NOTIFY, as a scheduler batch writes them.
    let streaming = true;
    let enqueuedCount = 0;
    const enqueue = async (backendIds: string[], count: number) => {
      const messages = Array.from({ length: count }, (_, index) => ({
        tenantId: seed.tenant.id,
        target: { backendId: backendIds[index % backendIds.length] },
        body: JSON.stringify({ seq: enqueuedCount + index }),
        origin: { type: 'trigger_run' as const, id: randomUUID() },
      }));
      const service = api.app.get(DeliveryService);
      await api.app
        .get(MikroORM)
        .em.fork()
        .transactional((em) => service.enqueueMany(em, messages));
      enqueuedCount += count;
    };
    const stream = (async () => {
      while (streaming) {
        await enqueue(streamed, 50);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();

    try {
      // Load first: every replica has been sending for a while when the signal comes.
      await new Promise((resolve) => setTimeout(resolve, 2_000));
      // Then wait until the replica to stop holds attempts of both kinds: a medium one (it should
      // finish it) and a slow one (it should release it). Slow deliveries are added two at a time
      // until it has claimed one; the other replicas simply take 6 s over theirs.
      await eventually(async () => {
        const { held } = await sendingBy(stopping);
        const holdsSlow = held.some((row) => row.backend_id === slow.id);
        if (holdsSlow && held.some((row) => row.backend_id === medium.id)) return true;
        const [{ waiting }] = await query<{ waiting: string }>(
          `select count(*) as waiting from deliveries where backend_id = $1 and status = 'PENDING'`,
          [slow.id],
        );
        if (Number(waiting) === 0 && !holdsSlow) await enqueue([slow.id], 2);
        return false;
      }, 20_000);

      const atSignal = await sendingBy(stopping);
      let afterSignal!: Awaited<ReturnType<typeof sendingBy>>;
      const { signalledAt, exitedAt } = await terminate(stopping, async () => {
        await new Promise((resolve) => setTimeout(resolve, CLAIM_SLACK_MS));
        afterSignal = await sendingBy(stopping);
      });
      console.log(
        `shutdown under load: held ${atSignal.held.length} deliveries at SIGTERM and ${afterSignal.held.length} ${CLAIM_SLACK_MS} ms later, exited after ${exitedAt - signalledAt} ms`,
      );
      // It waited for the slow attempts for the whole grace period, then gave up on them promptly.
      expect(exitedAt - signalledAt).toBeGreaterThanOrEqual(GRACE_MS);
      expect(exitedAt - signalledAt).toBeLessThan(EXIT_BOUND_MS);
      // The stream goes on for a while with two replicas.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      streaming = false;
      await stream;

      await eventually(async () => {
        const [{ unfinished }] = await query<{ unfinished: string }>(
          `select count(*) as unfinished from deliveries where status <> 'SUCCEEDED'`,
        );
        return Number(unfinished) === 0;
      }, 30_000);
      const deliveries = await query<{ webhook_id: string }>('select webhook_id from deliveries');
      expect(deliveries).toHaveLength(enqueuedCount);
      const attempts = await query<AttemptRow>(
        `select a.delivery_id, d.webhook_id, d.backend_id, d.created_at, a.attempt, a.replica, a.at, a.status_code, a.error
           from delivery_attempts a join deliveries d on d.id = a.delivery_id
          order by a.delivery_id, a.attempt`,
      );
      const stopped = attempts.filter((attempt) => attempt.replica === replicaName(stopping));
      const others = new Set(children.map(replicaName));
      expect(
        attempts.every((attempt) => attempt.replica === replicaName(stopping) || others.has(attempt.replica!)),
      ).toBe(true);
      expect(stopped.length).toBeGreaterThan(0);
      // No lease expired: nothing waited for one.
      expect(attempts.filter((attempt) => attempt.error?.startsWith('lease expired'))).toEqual([]);

      // Every delivery arrived. Attempts that reached the receiver (an answer, or aborted while it
      // waited) are its arrivals, in order; any other failure is a connection the receiver never
      // read (a keep-alive socket it was closing, on this loaded machine), retried as usual.
      const arrivals = new Map<string, ReceivedRequest[]>();
      for (const request of receiver.requests) {
        const webhookId = request.headers['webhook-id'] as string;
        arrivals.set(webhookId, [...(arrivals.get(webhookId) ?? []), request]);
      }
      expect(new Set(arrivals.keys())).toEqual(new Set(deliveries.map((row) => row.webhook_id)));
      const reached = attempts.filter((attempt) => attempt.status_code !== null || attempt.error === 'aborted');
      const unreached = attempts.filter((attempt) => attempt.status_code === null && attempt.error !== 'aborted');
      expect(unreached.filter((attempt) => !/^connection (reset|refused)/.test(attempt.error ?? ''))).toEqual([]);
      expect(reached).toHaveLength(receiver.requests.length);
      const arrivalOf = new Map<AttemptRow, ReceivedRequest>();
      for (const [webhookId, list] of arrivals) {
        const own = reached.filter((attempt) => attempt.webhook_id === webhookId);
        expect(own.length, webhookId).toBe(list.length);
        own.forEach((attempt, index) => arrivalOf.set(attempt, list[index]));
      }

      // It took nothing new once stopping: whatever it attempted, it had finished by the second
      // look, 1 s after SIGTERM, or was still holding then. Meanwhile the others kept taking new
      // deliveries, as it would have had it gone on claiming.
      const claimedLate = stopped.filter(
        (attempt) => attempt.at > afterSignal.at && !afterSignal.held.some((row) => row.id === attempt.delivery_id),
      );
      expect(claimedLate).toEqual([]);
      const createdLater = attempts.filter((attempt) => attempt.created_at > afterSignal.at);
      expect(createdLater.length).toBeGreaterThan(100);

      // What it held was finished (within the grace period) or released: aborted, then sent by
      // another replica at once, nowhere near the 60 s lease.
      const finished = stopped.filter((attempt) => attempt.status_code === 200 && attempt.at > atSignal.at);
      const released = stopped.filter((attempt) => attempt.error === 'aborted');
      console.log(
        `shutdown under load: ${stopped.length} attempts by the stopping replica, ${finished.length} finished after SIGTERM, ${released.length} released; ${unreached.length} attempts never reached the receiver`,
      );
      expect(finished.length).toBeGreaterThan(0);
      expect(released.length).toBeGreaterThan(0);
      for (const row of atSignal.held) {
        const own = stopped.find((attempt) => attempt.delivery_id === row.id);
        expect(own, row.id).toBeDefined();
        expect(own!.status_code === 200 || own!.error === 'aborted').toBe(true);
      }
      for (const attempt of released) {
        expect(attempt.backend_id).toBe(slow.id);
        const retry = attempts.find((a) => a.delivery_id === attempt.delivery_id && a.attempt === attempt.attempt + 1);
        expect(retry, attempt.webhook_id).toMatchObject({ status_code: 200 });
        expect(retry!.replica).not.toBe(replicaName(stopping));
        expect(arrivalOf.get(retry!)!.at - exitedAt).toBeLessThan(5_000);
      }
      expect(stopping.stdout()).toContain(`released ${released.length} in-flight deliveries to other replicas`);

      // Sent twice: exactly the released attempts (the receiver saw them, their outcome was never
      // known); everything answered within the grace period arrived once.
      const duplicated = [...arrivals].filter(([, list]) => list.length > 1);
      console.log(
        `shutdown under load: ${enqueuedCount} deliveries, ${receiver.requests.length} arrivals, ${duplicated.length} webhook-ids twice`,
      );
      expect(receiver.requests.length - arrivals.size).toBe(released.length);
      expect(duplicated.map(([webhookId]) => webhookId).sort()).toEqual(released.map((a) => a.webhook_id).sort());
      expect(duplicated.every(([, list]) => list.length === 2 && list[0].path === '/slow')).toBe(true);
    } finally {
      streaming = false;
      await stream;
    }
  }, 60_000);

  it('cron slots keep firing once per (trigger, second) while a scheduling replica stops and its replacement starts', async () => {
    const token = seed.backendUser.token;
    await api.http
      .post('/api/machine/register-backend')
      .set(bearer(token))
      .send({ name: 'cron', callbackUrl: receiver.url('/medium/cron'), runKeys: ['shutdown-cron'] })
      .expect(201);
    receiver.requests.length = 0;
    const triggers: { id: string; nextRunAt: string }[] = [];
    for (let index = 0; index < 30; index++) {
      const created = await api.http
        .post(`/api/applications/${seed.application.id}/triggers`)
        .set(bearer(seed.operatorUser.token))
        .send({ name: `every-second-${index}`, cronExpression: '* * * * * *', runKey: 'shutdown-cron' })
        .expect(201);
      triggers.push(created.body);
    }

    // The replica to stop is one that fires: its own counter says so (the first replica to tick
    // after a second's boundary fires that whole second, so it may take a few seconds).
    const victim = children[0];
    await eventually(async () => (await firesOf(victim)) > 0, 20_000);
    // SIGTERM just after a whole second, when the replicas' ticks claim that second's slots; its
    // replacement starts meanwhile, as in a rolling update.
    await new Promise((resolve) => setTimeout(resolve, 1_010 - (Date.now() % 1_000)));
    let replacement!: Promise<BuiltApp>;
    const { signalledAt, exitedAt } = await terminate(victim, async () => {
      replacement = spawnReplica();
    });
    console.log(`cron shutdown: a scheduling replica exited ${exitedAt - signalledAt} ms after SIGTERM`);
    expect(exitedAt - signalledAt).toBeLessThan(EXIT_BOUND_MS);
    await replacement;
    await new Promise((resolve) => setTimeout(resolve, 2_000));

    const disabledAt = new Map<string, number>();
    for (const trigger of triggers) {
      await api.http
        .patch(`/api/triggers/${trigger.id}`)
        .set(bearer(seed.operatorUser.token))
        .send({ enabled: false })
        .expect(200);
      disabledAt.set(trigger.id, Date.now());
    }
    const [{ count: runCount }] = await query<{ count: string }>(
      `select count(*) from trigger_runs where trigger_id = any($1::uuid[])`,
      [triggers.map((trigger) => trigger.id)],
    );
    await eventually(async () => {
      const [{ unfinished }] = await query<{ unfinished: string }>(
        `select count(*) as unfinished from deliveries where status <> 'SUCCEEDED'`,
      );
      return Number(unfinished) === 0 && receiver.requests.length >= Number(runCount);
    }, 30_000);

    const runs = await query<{ trigger_id: string; scheduled_for: Date }>(
      `select trigger_id, scheduled_for from trigger_runs where trigger_id = any($1::uuid[])
        order by trigger_id, scheduled_for`,
      [triggers.map((trigger) => trigger.id)],
    );
    // Exactly once per (trigger, second), with no second missing from the first slot to the disabling.
    const doubled = await query(`select trigger_id, scheduled_for from trigger_runs group by 1, 2 having count(*) > 1`);
    expect(doubled).toEqual([]);
    for (const trigger of triggers) {
      const seconds = runs.filter((run) => run.trigger_id === trigger.id).map((run) => run.scheduled_for.getTime());
      expect(seconds[0]).toBe(Date.parse(trigger.nextRunAt));
      const last = seconds[seconds.length - 1];
      expect(seconds).toEqual(Array.from({ length: (last - seconds[0]) / 1000 + 1 }, (_, i) => seconds[0] + i * 1000));
      expect(last).toBeLessThanOrEqual(disabledAt.get(trigger.id)!);
      expect(last).toBeGreaterThan(disabledAt.get(trigger.id)! - 2_000);
      // Spans the stop: slots before the signal, and after the restarted replica was back.
      expect(seconds[0]).toBeLessThan(signalledAt);
      expect(last).toBeGreaterThan(exitedAt + 2_000);
    }
    // One receipt per run, none twice, nothing re-sent because a lease expired.
    const receipts = receiver.requests.map((request) => {
      const payload = JSON.parse(request.body) as { triggerId: string; executionTime: string };
      return `${payload.triggerId} ${payload.executionTime}`;
    });
    expect(receipts.length).toBe(new Set(receipts).size);
    expect(new Set(receipts)).toEqual(
      new Set(runs.map((run) => `${run.trigger_id} ${run.scheduled_for.toISOString().replace('.000Z', 'Z')}`)),
    );
    const [{ expired }] = await query<{ expired: string }>(
      `select count(*) as expired from delivery_attempts where error like 'lease expired%'`,
    );
    expect(expired).toBe('0');
  }, 60_000);
});
