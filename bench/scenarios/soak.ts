import { loadavg } from 'node:os';
import pg from 'pg';
import { activationUrl } from '../../src/flows/execution-engine.js';
import { call, registerBackends, type RegisteredBackend, seedTenant } from '../support/api.js';
import { count, createBenchDatabase, serverCpuReader } from '../support/database.js';
import { GcTrace } from '../support/gc-trace.js';
import { burst } from '../support/load.js';
import { openLoop } from '../support/open-loop.js';
import { PrivateCluster } from '../support/private-cluster.js';
import { type ServerProcess, startServer } from '../support/processes.js';
import { type BenchContext, benchRow, type BenchRow, type Scenario } from '../support/scenario.js';
import { serviceEnv, startService } from '../support/service.js';
import { percentile, pollUntil, sleep } from '../support/stats.js';
import { insertCronTriggers, onceAt } from '../support/triggers.js';
import { checkSoak } from './soak/checks.js';
import { type Minute, type Sample, soakReport } from './soak/report.js';

/**
 * BENCH_SOAK_MINUTES (default 10) sets the length of the soak, BENCH_SOAK_LOAD (default 0.5) the
 * share of the measured capacity it offers; BENCH_SOAK_ACTIVATIONS (calls/s) and BENCH_SOAK_CRON
 * (every-second triggers) fix the two rates instead, to compare runs on different days.
 */
const MINUTES = Number(process.env.BENCH_SOAK_MINUTES ?? 10);
const LOAD = Number(process.env.BENCH_SOAK_LOAD ?? 0.5);
const FIXED_ACTIVATIONS = process.env.BENCH_SOAK_ACTIVATIONS ? Number(process.env.BENCH_SOAK_ACTIVATIONS) : null;
const FIXED_CRON = process.env.BENCH_SOAK_CRON ? Number(process.env.BENCH_SOAK_CRON) : null;
const PROBE_SECONDS = 10;
const PROBE_TRIGGERS = 3_000;
/** Backend 0 of 20 answers 500 to everything: 5 % of the cron triggers route to it. */
const BACKENDS = 20;
const FAILING_BACKEND = 0;
/** The flow's webhook step calls a healthy backend, so every execution can complete. */
const STEP_BACKEND = 1;
/**
 * Retries that happen within the run: 4 attempts over ~7 s, then DEAD (the default schedule's
 * second retry comes after 5 minutes, its last after a day).
 */
const RETRY_SCHEDULE = '0,1s,2s,4s';
const RETRY_ATTEMPTS = RETRY_SCHEDULE.split(',').length;
const SAMPLE_EVERY_MS = 5_000;
const DRAIN_TIMEOUT_MS = 5 * 60_000;

export interface SoakFixture {
  db: pg.Client;
  app: ServerProcess;
  gcTrace: GcTrace;
  receiver: ServerProcess;
  flowId: string;
  startUrl: string;
  anyUrl: string;
  backends: RegisteredBackend[];
  /** Index in `backends` of the one that answers 500. */
  failingBackend: number;
  tenantId: string;
  applicationId: string;
}

/**
 * Mixed load for MINUTES at LOAD × the capacity measured at the start of the same run, on the
 * built service (child process, production configuration, its own scratch database), to show that
 * memory and latency stay flat. The load: every-second cron triggers routed to 20 backends of a
 * receiver process (one of them answers 500, so its deliveries retry and die), and, open-loop at a
 * constant rate, calls of a flow [callback "Submitted"] → [webhook "Notify"] → [callback "Approve"]:
 * half of them start an execution (which delivers its webhook step, then waits), half resume one
 * waiting execution with `execution=any`. Per minute: calls, activation latency, cron fire lag,
 * receipt lags, CPU, RSS and database size; at the end, start against end and a verdict.
 */
export const soak: Scenario = {
  name: 'soak',
  description: `${MINUTES} min of cron firings and activations (5 % failing backends) at ${LOAD * 100} % of the measured capacity`,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const cluster = await clusterWithAutovacuum(context);
    const database = await createBenchDatabase(cluster?.url ?? context.databaseServerUrl);
    const db = new pg.Client({ connectionString: database.url });
    const gcTrace = new GcTrace();
    let receiver: ServerProcess | null = null;
    let app: ServerProcess | null = null;
    try {
      await db.connect();
      receiver = await startServer(
        'bench/soak-receiver.js',
        { RECEIVER_FAILING: `/backend-${FAILING_BACKEND}` },
        '/_groups',
      );
      const env = serviceEnv(database.url, { DELIVERY_RETRY_SCHEDULE: RETRY_SCHEDULE });
      app = await startService(env, { nodeFlags: GcTrace.NODE_FLAGS, onStdoutLine: gcTrace.onLine });
      const fixture = await seed(db, app, gcTrace, receiver, env.ADMIN_TOKEN);
      const mixCapacity = await probeActivations(context, fixture);
      const cronCapacity = await probeCron(context, fixture);
      // Each kind at LOAD/2 of its own capacity: together they take LOAD of the service.
      const activationRate = FIXED_ACTIVATIONS ?? Math.max(2, Math.round((LOAD / 2) * mixCapacity));
      const cronTriggers = FIXED_CRON ?? Math.max(BACKENDS, Math.round((LOAD / 2) * cronCapacity));
      context.log(
        `soak: capacity ${Math.round(mixCapacity)} activation calls/s, ${Math.round(cronCapacity)} cron ` +
          `firings/s; offering ${activationRate} calls/s and ${cronTriggers} every-second triggers for ${MINUTES} min`,
      );
      const run = await soakFor(context, fixture, activationRate, cronTriggers);
      await drain(context, fixture);
      const report = await soakReport(fixture, run);
      context.log(`soak: per minute\n${report.markdown}`);
      await checkSoak(context, fixture, run, RETRY_ATTEMPTS);
      context.report(report.markdown);
      const probed = `${PROBE_TRIGGERS.toLocaleString('en-US')} due at once`;
      return [
        benchRow('soak', `capacity: activation mix, closed loop, ${context.connections} conns`, 'calls/s', mixCapacity),
        benchRow('soak', `capacity: cron firing + delivery, ${probed}`, '/s', cronCapacity),
        benchRow(
          'soak',
          'offered: activation calls, open loop (½ flow starts, ½ execution=any)',
          'calls/s',
          activationRate,
        ),
        benchRow('soak', 'offered: every-second cron triggers (5 % to a failing backend)', 'triggers', cronTriggers),
        ...report.rows,
      ];
    } finally {
      await app?.stop();
      await receiver?.stop();
      await db.end();
      await database.drop();
      await cluster?.destroy();
    }
  },
};

/**
 * Without autovacuum, dead rows pile up and every minute of the soak gets slower for a reason no
 * production database has (the shared CI server runs with `autovacuum = off`, for the tests'
 * speed): there the soak runs on a private cluster with PostgreSQL's default settings instead.
 * Null when the given server vacuums.
 */
async function clusterWithAutovacuum(context: BenchContext): Promise<PrivateCluster | null> {
  const client = new pg.Client({ connectionString: context.databaseServerUrl });
  await client.connect();
  const { rows } = await client.query<{ autovacuum: string }>('show autovacuum').finally(() => client.end());
  if (rows[0].autovacuum === 'on') return null;
  const unavailable = PrivateCluster.unavailable();
  if (unavailable) {
    throw new Error(
      `soak: the server at TEST_DATABASE_URL runs with autovacuum off, which no production database does, and ` +
        `a private cluster cannot be made here (${unavailable}); point TEST_DATABASE_URL at a server with autovacuum on`,
    );
  }
  context.log('soak: the given server runs with autovacuum off; running on a private cluster with default settings');
  return PrivateCluster.create();
}

/** A tenant, 20 backends at the receiver, and the flow, through the API. */
async function seed(
  db: pg.Client,
  app: ServerProcess,
  gcTrace: GcTrace,
  receiver: ServerProcess,
  adminToken: string,
): Promise<SoakFixture> {
  const tenant = await seedTenant(app.baseUrl, adminToken, ['backend', 'operator']);
  const backends = await registerBackends(app.baseUrl, tenant.machineToken, BACKENDS, (index) => ({
    name: `soak-${index}`,
    callbackUrl: `${receiver.baseUrl}/backend-${index}`,
  }));
  const flow = await call(app.baseUrl, 'POST', `/api/applications/${tenant.applicationId}/flows`, tenant.machineToken, {
    name: 'Soak',
    steps: [
      { type: 'callback', name: 'Submitted' },
      {
        type: 'webhook',
        name: 'Notify',
        backendId: backends[STEP_BACKEND].id,
        invocationMethod: { body: { group: '{{ .trigger.data.group }}', sentAt: '{{ .trigger.data.sentAt }}' } },
      },
      { type: 'callback', name: 'Approve' },
    ],
  });
  // Paths, not URLs: the load generator puts the service's base URL in front.
  const activate = (step: number) => activationUrl('', flow.id, flow.steps[step].triggerId);
  return {
    db,
    app,
    gcTrace,
    receiver,
    flowId: flow.id,
    startUrl: activate(0),
    anyUrl: `${activate(2)}?execution=any`,
    backends,
    failingBackend: FAILING_BACKEND,
    tenantId: tenant.tenantId,
    applicationId: tenant.applicationId,
  };
}

/**
 * Closed-loop bursts: flow starts for PROBE_SECONDS (warm-up, and the pool of waiting executions
 * the `any` calls take from), then the soak's mix (start, any, start, …), as many calls as
 * executions wait. Sustainable rate = calls answered ÷ the time until the background work they
 * caused (webhook steps, the flow worker) was done too, so work deferred past the burst does not
 * count as capacity.
 */
async function probeActivations(context: BenchContext, fixture: SoakFixture): Promise<number> {
  const { app } = fixture;
  const body = JSON.stringify({ group: 'probe', sentAt: Date.now() });
  context.log(`soak: probing capacity: flow starts for ${PROBE_SECONDS} s`);
  const starts = await burst({
    url: app.baseUrl,
    connections: context.connections,
    durationSeconds: PROBE_SECONDS,
    requests: [{ method: 'POST', path: fixture.startUrl, body }],
  });
  await settle(fixture);
  // As many calls as executions wait: about half of them are `any`, so the pool never runs dry.
  const waiting = await count(fixture.db, `select count(*) from executions where status = 'waiting'`);
  context.log(`soak: probing capacity: ${waiting} calls of the start/any mix`);
  const startedAt = Date.now();
  const mix = await burst({
    url: app.baseUrl,
    connections: context.connections,
    amount: waiting,
    requests: [
      { method: 'POST', path: fixture.startUrl, body },
      { method: 'POST', path: fixture.anyUrl, body: '{}' },
    ],
  });
  const settledAt = await settle(fixture);
  for (const [what, result] of [
    ['flow starts', starts],
    ['mix', mix],
  ] as const) {
    if (result.failures > 0) throw new Error(`capacity probe, ${what}: ${result.failures} calls failed; void`);
  }
  const capacity = mix.done / ((settledAt - startedAt) / 1000);
  context.log(
    `soak: ${Math.round(starts.done / starts.seconds)} starts/s alone; mix ${Math.round(mix.done / mix.seconds)} ` +
      `calls/s answered, ${Math.round(capacity)}/s counting the background work (p99 ${mix.p99Ms} ms)`,
  );
  return capacity;
}

/**
 * PROBE_TRIGGERS triggers, routed round-robin to the healthy backends, due at the same upcoming
 * second (their expression is that second's date and time, so each fires once): firings and
 * deliveries per second = triggers ÷ (last receipt − that second).
 */
async function probeCron(context: BenchContext, fixture: SoakFixture): Promise<number> {
  const healthy = fixture.backends.filter((_, index) => index !== FAILING_BACKEND).map((backend) => backend.id);
  const dueAt = Math.ceil(Date.now() / 1000) * 1000 + 2_000;
  const due = new Date(dueAt);
  context.log(`soak: probing capacity: ${PROBE_TRIGGERS} cron triggers due at once`);
  await insertCronTriggers(fixture.db, {
    tenantId: fixture.tenantId,
    applicationId: fixture.applicationId,
    prefix: 'soak.probe',
    runKey: 'soak.probe',
    count: PROBE_TRIGGERS,
    cron: onceAt(due),
    backendIds: healthy,
    nextRunSql: `'${due.toISOString()}'::timestamptz`,
  });
  const probe = await pollUntil(
    async () => (await receiverGroup(fixture, 'soak.probe'))?.distinct === PROBE_TRIGGERS,
    DRAIN_TIMEOUT_MS,
    100,
  ).then(() => receiverGroup(fixture, 'soak.probe'));
  await untilNone(fixture, `select count(*) from deliveries where status in ('PENDING', 'SENDING')`);
  return PROBE_TRIGGERS / ((probe!.lastAt - dueAt) / 1000);
}

export interface SoakRun {
  startAt: number;
  endAt: number;
  minutes: Minute[];
  samples: Sample[];
  activationRate: number;
  cronTriggers: number;
  /** X-Execution-Id of every answered flow start and every answered `any`. */
  startedIds: Set<string>;
  resumedIds: Set<string>;
  resumedAnswers: number;
  /** What each table (with its indexes and TOAST) grew by over the run, largest first. */
  tableGrowthMb: { table: string; mb: number }[];
}

/**
 * The soak itself: `cronTriggers` every-second triggers (round-robin over all 20 backends, the
 * failing one included) from a whole second on, and the open-loop calls from that second for
 * MINUTES; the process is sampled every SAMPLE_EVERY_MS. Returns once every call is answered and
 * every trigger has fired its last slot of the window, and turns the triggers off.
 */
async function soakFor(
  context: BenchContext,
  fixture: SoakFixture,
  activationRate: number,
  cronTriggers: number,
): Promise<SoakRun> {
  const startAt = Math.ceil(Date.now() / 1000) * 1000 + 3_000;
  const endAt = startAt + MINUTES * 60_000;
  await insertCronTriggers(fixture.db, {
    tenantId: fixture.tenantId,
    applicationId: fixture.applicationId,
    prefix: 'soak.cron',
    runKey: 'soak.cron',
    count: cronTriggers,
    cron: '* * * * * *',
    backendIds: fixture.backends.map((backend) => backend.id),
    nextRunSql: `'${new Date(startAt).toISOString()}'::timestamptz`,
  });
  const epoch = await fetch(`${fixture.receiver.baseUrl}/_epoch?at=${startAt}`, { method: 'POST' });
  if (!epoch.ok) throw new Error(`receiver /_epoch answered ${epoch.status}`);
  const run: SoakRun = {
    startAt,
    endAt,
    minutes: Array.from({ length: MINUTES }, () => ({ sent: 0, answered: 0, failed: 0, latenciesMs: [] })),
    samples: [],
    activationRate,
    cronTriggers,
    startedIds: new Set(),
    resumedIds: new Set(),
    resumedAnswers: 0,
    tableGrowthMb: [],
  };
  const tablesBefore = await tableBytes(fixture.db);
  const sampling = sample(context, fixture, run);
  await openLoop({
    baseUrl: fixture.app.baseUrl,
    ratePerSecond: activationRate,
    startAt,
    durationMs: endAt - startAt,
    next: (index, intendedAt) =>
      index % 2 === 0
        ? { method: 'POST', path: fixture.startUrl, body: JSON.stringify({ group: 'soak', sentAt: intendedAt }) }
        : { method: 'POST', path: fixture.anyUrl, body: '{}' },
    onOutcome: (outcome) => {
      const minute = run.minutes[Math.floor((outcome.intendedAt - startAt) / 60_000)];
      minute.sent++;
      if (outcome.status !== 200) {
        minute.failed++;
        return;
      }
      minute.answered++;
      minute.latenciesMs.push(outcome.latencyMs);
      const id = String(outcome.headers['x-execution-id']);
      if (outcome.index % 2 === 0) run.startedIds.add(id);
      else {
        run.resumedIds.add(id);
        run.resumedAnswers++;
      }
    },
  });
  await sampling;
  const tablesAfter = await tableBytes(fixture.db);
  run.tableGrowthMb = [...tablesAfter]
    .map(([table, bytes]) => ({ table, mb: (bytes - (tablesBefore.get(table) ?? 0)) / (1024 * 1024) }))
    .sort((a, b) => b.mb - a.mb);
  await untilNone(fixture, `select count(*) from cron_triggers where run_key = 'soak.cron' and next_run_at < $1`, [
    new Date(endAt),
  ]);
  await fixture.db.query(`update cron_triggers set enabled = false, next_run_at = null where run_key = 'soak.cron'`);
  return run;
}

/**
 * Every SAMPLE_EVERY_MS from the start to the end of the run: the service's RSS, V8 heap in use
 * and CPU, the database server's CPU, the load average; at each whole minute also the database
 * size, the waiting executions and the queued deliveries. Logs a line per minute.
 */
async function sample(context: BenchContext, fixture: SoakFixture, run: SoakRun): Promise<void> {
  const { db, app } = fixture;
  const serverCpuMs = await serverCpuReader(db);
  const cpuStart = serverCpuMs() ?? NaN;
  for (let at = run.startAt; at <= run.endAt; at += SAMPLE_EVERY_MS) {
    await sleep(at - Date.now());
    const sample: Sample = {
      at,
      rssMb: app.rssMb() ?? NaN,
      heapUsedMb: await heapUsedMb(app),
      serviceCpuMs: app.cpuMs() ?? NaN,
      databaseCpuMs: (serverCpuMs() ?? NaN) - cpuStart,
      loadAverage: loadavg()[0],
    };
    if ((at - run.startAt) % 60_000 === 0) {
      const { rows } = await db.query<{ size: string; waiting: string; queued: string }>(
        `select pg_database_size(current_database()) as size,
                (select count(*) from executions where status = 'waiting') as waiting,
                (select count(*) from deliveries where status in ('PENDING', 'SENDING')) as queued`,
      );
      sample.minute = {
        databaseMb: Number(rows[0].size) / (1024 * 1024),
        waiting: Number(rows[0].waiting),
        queued: Number(rows[0].queued),
      };
      const done = run.minutes[(at - run.startAt) / 60_000 - 1];
      if (done) {
        const live = fixture.gcTrace.liveMbBetween(at - 60_000, at);
        context.log(
          `soak: minute ${(at - run.startAt) / 60_000}: ${done.answered}/${done.sent} answered, p99 ` +
            `${percentile(done.latenciesMs, 0.99).toFixed(1)} ms, RSS ${sample.rssMb.toFixed(0)} MB (heap used ` +
            `${sample.heapUsedMb.toFixed(0)} MB, live after full GCs ${live.map((mb) => mb.toFixed(0)).join('/') || '–'} MB), database ` +
            `${sample.minute.databaseMb.toFixed(0)} MB, ${sample.minute.waiting} waiting, ${sample.minute.queued} ` +
            `deliveries queued, load ${sample.loadAverage.toFixed(1)}`,
        );
      }
    }
    run.samples.push(sample);
  }
}

async function tableBytes(db: pg.Client): Promise<Map<string, number>> {
  const { rows } = await db.query<{ name: string; bytes: string }>(
    `select c.relname as name, pg_total_relation_size(c.oid) as bytes
       from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = current_schema() and c.relkind = 'r'`,
  );
  return new Map(rows.map((row) => [row.name, Number(row.bytes)]));
}

/** The V8 heap in use as the service reports it (live objects plus garbage not yet collected). */
async function heapUsedMb(app: ServerProcess): Promise<number> {
  const metrics = await (await fetch(`${app.baseUrl}/metrics`)).text();
  const match = /^switchyard_nodejs_heap_size_used_bytes (\S+)$/m.exec(metrics);
  return match ? Number(match[1]) / (1024 * 1024) : NaN;
}

/** Until the flow worker has moved every execution on and no delivery waits for an attempt. */
async function drain(context: BenchContext, fixture: SoakFixture): Promise<void> {
  context.log(
    `soak: waiting for the executions and deliveries in flight (the failing ones die after ${RETRY_ATTEMPTS} attempts)`,
  );
  await settle(fixture);
  await untilNone(fixture, `select count(*) from deliveries where status in ('PENDING', 'SENDING')`);
}

/** Until no execution is running (each started one waits at "Approve"; each resumed one completed). */
function settle(fixture: SoakFixture): Promise<number> {
  return untilNone(fixture, `select count(*) from executions where status = 'running'`);
}

/** Resolves with the time the count query first answered 0. */
function untilNone(fixture: SoakFixture, countSql: string, params: unknown[] = []): Promise<number> {
  return pollUntil(async () => (await count(fixture.db, countSql, params)) === 0, DRAIN_TIMEOUT_MS, 50);
}

async function receiverGroup(
  fixture: SoakFixture,
  name: string,
): Promise<{ received: number; distinct: number; lastAt: number } | undefined> {
  const response = await fetch(`${fixture.receiver.baseUrl}/_groups`);
  const { groups } = (await response.json()) as {
    groups: { name: string; received: number; distinct: number; lastAt: number }[];
  };
  return groups.find((group) => group.name === name);
}
