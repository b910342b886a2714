import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { CLAIM_DUE_SQL, COUNT_DUE_SQL } from '../../src/triggers/triggers.repository.js';
import { registerBackends, seedTenant } from '../support/api.js';
import { createBenchDatabase } from '../support/database.js';
import type { ServerProcess } from '../support/processes.js';
import { type BenchContext, benchRow, type BenchRow, type Scenario } from '../support/scenario.js';
import { serviceEnv, startService } from '../support/service.js';
import { percentile, pollUntil } from '../support/stats.js';
import { insertCronTriggers, onceAt } from '../support/triggers.js';

/** BENCH_CRON_BURST, BENCH_CRON_RATE and BENCH_CRON_STORED override the three sizes. */
const BURST = Number(process.env.BENCH_CRON_BURST ?? 10_000);
const RATE = Number(process.env.BENCH_CRON_RATE ?? 1_000);
const STEADY_SECONDS = 30;
const STORED_SMALL = 10_000;
const STORED_LARGE = Number(process.env.BENCH_CRON_STORED ?? 1_000_000);
/** Due triggers when the claim query is EXPLAINed: "a handful", as on any quiet second. */
const DUE_IN_PLAN = 5;
const PLAN_SAMPLES = 30;
/** 4 backends × the default per-target cap of 16 (DELIVERY_CONCURRENCY 64 / 4): the cap never binds. */
const BACKENDS = 4;
const DUE_INDEX = 'cron_triggers_due';

interface Seeded {
  tenantId: string;
  applicationId: string;
  backendIds: string[];
}

/**
 * The cron scheduler on the built service (child process, its own scratch database), triggers
 * inserted with SQL: (a) BURST triggers due in the same second, routed by backendId to backends at
 * a local receiver, timed from that second to the last receipt; (b) RATE every-second triggers for
 * 30 s, fire lag (firedAt − scheduledFor) and receipt lag (arrival − executionTime); (c) the
 * claim query EXPLAINed with 10,000 and with 1,000,000 stored triggers of which a handful are due,
 * to show the tick's cost follows the due triggers, not the stored ones. (a) and (b) also run once
 * with triggers that reach no backend: the scheduler's own cost, without the delivery engine
 * sending on the same CPU.
 */
export const cron: Scenario = {
  name: 'cron',
  description: `cron scheduler: ${BURST} due at once, ${RATE}/s for ${STEADY_SECONDS} s, claim cost at ${STORED_LARGE} stored`,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const k = (n: number) => n.toLocaleString('en-US');
    const database = await createBenchDatabase(context.databaseServerUrl);
    const receiver = await Receiver.start();
    const db = new pg.Client({ connectionString: database.url });
    await db.connect();
    try {
      const env = serviceEnv(database.url);
      const app = await startService(env);
      let seeded: Seeded;
      let unroutedBurst: BurstResult;
      let burst: BurstResult;
      let unroutedSteady: SteadyResult;
      let steady: SteadyResult;
      try {
        seeded = await seed(app.baseUrl, env.ADMIN_TOKEN, receiver);
        context.log(`cron (a): ${k(BURST)} unrouted triggers due in one second`);
        unroutedBurst = await measureBurst(context, db, app, seeded, receiver, false);
        context.log(`cron (a): ${k(BURST)} triggers due in one second`);
        burst = await measureBurst(context, db, app, seeded, receiver, true);
        context.log(`cron (b): ${k(RATE)} unrouted every-second triggers for ${STEADY_SECONDS} s`);
        unroutedSteady = await measureSteady(context, db, app, seeded, receiver, false);
        context.log(`cron (b): ${k(RATE)} every-second triggers for ${STEADY_SECONDS} s`);
        steady = await measureSteady(context, db, app, seeded, receiver, true);
      } finally {
        await app.stop();
      }
      // The service is stopped: nothing claims (or locks) the due handful while it is EXPLAINed.
      context.log(`cron (c): claim query with ${STORED_SMALL.toLocaleString('en-US')} stored triggers`);
      const small = await measureClaim(context, db, seeded, STORED_SMALL);
      context.log(`cron (c): claim query with ${STORED_LARGE.toLocaleString('en-US')} stored triggers`);
      const large = await measureClaim(context, db, seeded, STORED_LARGE);

      const row = (figure: string, value: number | null, unit: string, baseline: number | null = null): BenchRow =>
        benchRow('cron', figure, unit, value, baseline);
      return [
        row(
          `(a) ${k(BURST)} due in one second, no backend (scheduler alone): last run committed`,
          unroutedBurst.firedSeconds,
          's',
        ),
        row(`(a) server CPU per firing, no backend`, unroutedBurst.cpuMsPerTrigger, 'ms'),
        row(`(a) ${k(BURST)} due in one second: last run committed`, burst.firedSeconds, 's'),
        row(`(a) ${k(BURST)} due in one second: last delivery received (goal < 10 s)`, burst.deliveredSeconds, 's'),
        row(`(a) server CPU per firing + delivery`, burst.cpuMsPerTrigger, 'ms'),
        row(`(b) fire lag p50, no backend (scheduler alone)`, unroutedSteady.fireLagP50Ms, 'ms'),
        row(`(b) fire lag p99, no backend (scheduler alone)`, unroutedSteady.fireLagP99Ms, 'ms'),
        row(`(b) server CPU per firing, no backend`, unroutedSteady.cpuMsPerTrigger, 'ms'),
        row(`(b) ${k(RATE)}/s for ${STEADY_SECONDS} s: fires per second`, steady.firesPerSecond, '/s'),
        row(`(b) fire lag p50`, steady.fireLagP50Ms, 'ms'),
        row(`(b) fire lag p99 (goal < 1 s)`, steady.fireLagP99Ms, 'ms'),
        row(`(b) receipt lag p50 (arrival − executionTime)`, steady.receiptLagP50Ms, 'ms'),
        row(`(b) receipt lag p99`, steady.receiptLagP99Ms, 'ms'),
        row(`(b) server CPU per firing + delivery`, steady.cpuMsPerTrigger, 'ms'),
        row(`(c) claim query, ${k(STORED_LARGE)} stored vs ${k(STORED_SMALL)}`, large.claimMs, 'ms', small.claimMs),
        row(`(c) claim query buffers, ${k(STORED_LARGE)} vs ${k(STORED_SMALL)}`, large.buffers, 'pages', small.buffers),
        row(`(c) due count (metric), ${k(STORED_LARGE)} vs ${k(STORED_SMALL)}`, large.countMs, 'ms', small.countMs),
      ];
    } finally {
      await db.end();
      await receiver.close();
      await database.drop();
    }
  },
};

interface BurstResult {
  firedSeconds: number;
  deliveredSeconds: number;
  cpuMsPerTrigger: number | null;
}

/**
 * (a) Every trigger due at the same second, each to one of BACKENDS backends by backendId; or,
 * `routed` false, to no backend at all (UNROUTED runs), which times the scheduler alone.
 */
async function measureBurst(
  context: BenchContext,
  db: pg.Client,
  app: ServerProcess,
  seeded: Seeded,
  receiver: Receiver,
  routed: boolean,
): Promise<BurstResult> {
  const runKey = routed ? 'bench.burst' : 'bench.unrouted';
  await insertTriggers(db, seeded, { prefix: runKey, count: BURST, cron: '0 0 1 1 *', runKey, routed });
  // Inserted with no next run; one UPDATE then makes them all due at the same upcoming second, with
  // that second's expression: each fires once, and its next run is a year away, out of (b)'s way.
  const dueAt = Math.ceil(Date.now() / 1000) * 1000 + 2_000;
  const due = new Date(dueAt);
  await db.query(`update cron_triggers set cron_expression = $2, next_run_at = $1 where run_key = $3`, [
    due,
    onceAt(due),
    runKey,
  ]);
  const cpuBefore = app.cpuMs();
  const firedAt = await pollUntil(async () => {
    const { rows } = await db.query<{ count: string }>(
      `select count(*) from trigger_runs r join cron_triggers t on t.id = r.trigger_id where t.run_key = $1`,
      [runKey],
    );
    return Number(rows[0].count) >= BURST;
  }, 300_000);
  context.log(`cron (a): every run committed ${((firedAt - dueAt) / 1000).toFixed(1)} s after the due second`);
  if (!routed) {
    const cpuAfter = app.cpuMs();
    return {
      firedSeconds: (firedAt - dueAt) / 1000,
      deliveredSeconds: NaN,
      cpuMsPerTrigger: cpuBefore !== null && cpuAfter !== null ? (cpuAfter - cpuBefore) / BURST : null,
    };
  }
  await receiver.waitFor('bench.burst', BURST, 300_000);
  const cpuAfter = app.cpuMs();
  const received = receiver.of('bench.burst');
  if (received.webhookIds.size !== BURST) {
    throw new Error(`(a) ${received.webhookIds.size} distinct webhook-ids for ${BURST} triggers; the figures are void`);
  }
  return {
    firedSeconds: (firedAt - dueAt) / 1000,
    deliveredSeconds: (received.lastAt - dueAt) / 1000,
    cpuMsPerTrigger: cpuBefore !== null && cpuAfter !== null ? (cpuAfter - cpuBefore) / BURST : null,
  };
}

interface SteadyResult {
  firesPerSecond: number;
  fireLagP50Ms: number;
  fireLagP99Ms: number;
  receiptLagP50Ms: number;
  receiptLagP99Ms: number;
  cpuMsPerTrigger: number | null;
}

/** (b) RATE every-second triggers, all starting at the same second, for STEADY_SECONDS. */
async function measureSteady(
  context: BenchContext,
  db: pg.Client,
  app: ServerProcess,
  seeded: Seeded,
  receiver: Receiver,
  routed: boolean,
): Promise<SteadyResult> {
  const runKey = routed ? 'bench.steady' : 'bench.steady-unrouted';
  await insertTriggers(db, seeded, { prefix: runKey, count: RATE, cron: '* * * * * *', runKey, routed });
  const start = Math.ceil(Date.now() / 1000) * 1000 + 2_000;
  const end = start + STEADY_SECONDS * 1000;
  receiver.window = { start, end };
  await db.query(`update cron_triggers set next_run_at = $1 where run_key = $2`, [new Date(start), runKey]);
  await new Promise((resolve) => setTimeout(resolve, start - Date.now()));
  const cpuBefore = app.cpuMs();
  // Until every trigger's next run is past the window: every slot in it has fired (late or not).
  await pollUntil(
    async () => {
      const { rows } = await db.query<{ behind: string }>(
        `select count(*) as behind from cron_triggers where run_key = $2 and next_run_at < $1`,
        [new Date(end), runKey],
      );
      return Number(rows[0].behind) === 0;
    },
    STEADY_SECONDS * 1000 + 300_000,
  );
  const cpuAfter = app.cpuMs();
  await db.query(`update cron_triggers set enabled = false, next_run_at = null where run_key = $1`, [runKey]);

  const { rows } = await db.query<{ runs: string; p50: number; p99: number; max: number }>(
    `select count(*) as runs,
            percentile_cont(0.5) within group (order by lag) as p50,
            percentile_cont(0.99) within group (order by lag) as p99,
            max(lag) as max
       from (select extract(epoch from r.fired_at - r.scheduled_for) * 1000 as lag
               from trigger_runs r join cron_triggers t on t.id = r.trigger_id
              where t.run_key = $3 and r.scheduled_for >= $1 and r.scheduled_for < $2) lags`,
    [new Date(start), new Date(end), runKey],
  );
  const runs = Number(rows[0].runs);
  const expected = RATE * STEADY_SECONDS;
  context.log(
    `cron (b): ${runs} runs in the window (expected ${expected}); fire lag max ${Math.round(rows[0].max)} ms`,
  );
  if (runs !== expected) throw new Error(`(b) ${runs} runs for ${expected} slots; the figures are void`);
  if (routed) await receiver.waitFor(runKey, expected, 300_000);
  const lags = receiver.of(runKey).lagsMs;
  return {
    firesPerSecond: runs / STEADY_SECONDS,
    fireLagP50Ms: rows[0].p50,
    fireLagP99Ms: rows[0].p99,
    receiptLagP50Ms: percentile(lags, 0.5),
    receiptLagP99Ms: percentile(lags, 0.99),
    cpuMsPerTrigger: cpuBefore !== null && cpuAfter !== null ? (cpuAfter - cpuBefore) / runs : null,
  };
}

interface ClaimResult {
  claimMs: number;
  buffers: number;
  countMs: number;
}

/**
 * (c) `stored` enabled triggers whose next runs are spread over the next 30 days, DUE_IN_PLAN of
 * them due now; the claim query (TriggersRepository's own text) EXPLAINed (ANALYZE, BUFFERS)
 * PLAN_SAMPLES times, each in a transaction rolled back so its row locks go too. Median time.
 */
async function measureClaim(
  context: BenchContext,
  db: pg.Client,
  seeded: Seeded,
  stored: number,
): Promise<ClaimResult> {
  await db.query('delete from cron_triggers');
  await insertTriggers(db, seeded, {
    prefix: 'stored',
    count: stored - DUE_IN_PLAN,
    cron: '0 0 1 1 *',
    runKey: 'bench.stored',
    nextRun: 'spread',
  });
  await insertTriggers(db, seeded, {
    prefix: 'due',
    count: DUE_IN_PLAN,
    cron: '0 0 1 1 *',
    runKey: 'bench.due',
    nextRun: 'due',
  });
  await db.query('vacuum analyze cron_triggers');
  const claim = await explainMedian(db, numbered(CLAIM_DUE_SQL), [new Date(), '{}', 100], DUE_IN_PLAN);
  const count = await explainMedian(db, numbered(COUNT_DUE_SQL), [new Date()], 1);
  context.log(`cron (c): ${stored.toLocaleString('en-US')} stored, claim plan:\n${claim.text}`);
  return { claimMs: claim.ms, buffers: claim.buffers, countMs: count.ms };
}

async function explainMedian(
  db: pg.Client,
  sql: string,
  params: unknown[],
  expectedRows: number,
): Promise<{ ms: number; buffers: number; text: string }> {
  const samples: { ms: number; buffers: number }[] = [];
  for (let sample = 0; sample < PLAN_SAMPLES + 3; sample++) {
    await db.query('begin');
    try {
      const { rows } = await db.query<{ 'QUERY PLAN': ExplainJson[] }>(
        `explain (analyze, buffers, format json) ${sql}`,
        params,
      );
      const [explained] = rows[0]['QUERY PLAN'];
      if (!indexNames(explained.Plan).includes(DUE_INDEX)) {
        throw new Error(`the plan does not use ${DUE_INDEX}: ${JSON.stringify(explained.Plan)}`);
      }
      if (explained.Plan['Actual Rows'] !== expectedRows) {
        throw new Error(`expected ${expectedRows} rows, the plan returned ${explained.Plan['Actual Rows']}`);
      }
      // The first few warm the cache and the plan; the rest are the measurement.
      if (sample >= 3) {
        samples.push({
          ms: explained['Planning Time'] + explained['Execution Time'],
          buffers: explained.Plan['Shared Hit Blocks'] + explained.Plan['Shared Read Blocks'],
        });
      }
    } finally {
      await db.query('rollback');
    }
  }
  await db.query('begin');
  const { rows } = await db.query<{ 'QUERY PLAN': string }>(`explain (analyze, buffers, costs off) ${sql}`, params);
  await db.query('rollback');
  samples.sort((x, y) => x.ms - y.ms);
  const median = samples[Math.floor(samples.length / 2)];
  return { ...median, text: rows.map((row) => `    ${row['QUERY PLAN']}`).join('\n') };
}

interface PlanNode {
  'Index Name'?: string;
  'Actual Rows': number;
  'Shared Hit Blocks': number;
  'Shared Read Blocks': number;
  Plans?: PlanNode[];
}

interface ExplainJson {
  Plan: PlanNode;
  'Planning Time': number;
  'Execution Time': number;
}

function indexNames(node: PlanNode): string[] {
  return [...(node['Index Name'] ? [node['Index Name']] : []), ...(node.Plans ?? []).flatMap(indexNames)];
}

/** MikroORM's `?` placeholders as pg's `$1, $2, …`. */
function numbered(sql: string): string {
  let index = 0;
  return sql.replace(/\?/g, () => `$${++index}`);
}

/**
 * Inserts `count` enabled triggers, routed by backendId round-robin over the seeded backends.
 * `nextRun`: none (set later by the caller), spread over the next 30 days, or due.
 */
async function insertTriggers(
  db: pg.Client,
  seeded: Seeded,
  options: {
    prefix: string;
    count: number;
    cron: string;
    runKey: string;
    nextRun?: 'none' | 'spread' | 'due';
    /** False: no backendId (and a runKey nobody listens on, chosen by the caller): UNROUTED. */
    routed?: boolean;
  },
): Promise<void> {
  const nextRun = {
    none: 'null',
    spread: `now() + interval '1 minute' + random() * interval '30 days'`,
    due: `now() - interval '1 second'`,
  }[options.nextRun ?? 'none'];
  const { prefix, count, cron, runKey } = options;
  await insertCronTriggers(db, {
    prefix,
    count,
    cron,
    runKey,
    tenantId: seeded.tenantId,
    applicationId: seeded.applicationId,
    backendIds: (options.routed ?? true) ? seeded.backendIds : [],
    nextRunSql: nextRun,
  });
}

/** A tenant, an application and BACKENDS backends at the receiver, through the public API. */
async function seed(baseUrl: string, adminToken: string, receiver: Receiver): Promise<Seeded> {
  const tenant = await seedTenant(baseUrl, adminToken, ['backend']);
  const backends = await registerBackends(baseUrl, tenant.machineToken, BACKENDS, (index) => ({
    name: `cron-${index}`,
    callbackUrl: receiver.url(`/cron-${index}`),
  }));
  return { tenantId: tenant.tenantId, applicationId: tenant.applicationId, backendIds: backends.map(({ id }) => id) };
}

interface Received {
  webhookIds: Set<string>;
  lastAt: number;
  /** Arrival minus executionTime, for payloads scheduled inside `window`. */
  lagsMs: number[];
}

/**
 * The backends' receiver, in this process: answers 200 at once over keep-alive and files each
 * payload by its runKey, with its arrival time.
 */
class Receiver {
  window = { start: 0, end: 0 };
  private readonly byRunKey = new Map<string, Received>();
  private server!: Server;

  static async start(): Promise<Receiver> {
    const receiver = new Receiver();
    receiver.server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const at = Date.now();
        response.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"success"}');
        const payload = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { runKey: string; executionTime: string };
        const received = receiver.of(payload.runKey);
        received.webhookIds.add(String(request.headers['webhook-id']));
        received.lastAt = Math.max(received.lastAt, at);
        const scheduled = Date.parse(payload.executionTime);
        if (scheduled >= receiver.window.start && scheduled < receiver.window.end) received.lagsMs.push(at - scheduled);
      });
    });
    receiver.server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  url(path: string): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}${path}`;
  }

  of(runKey: string): Received {
    let received = this.byRunKey.get(runKey);
    if (!received) this.byRunKey.set(runKey, (received = { webhookIds: new Set(), lastAt: 0, lagsMs: [] }));
    return received;
  }

  /** Until `count` distinct webhook-ids of `runKey` (for (b): inside the window) have arrived. */
  async waitFor(runKey: string, count: number, timeoutMs: number): Promise<void> {
    const windowed = runKey === 'bench.steady';
    await pollUntil(async () => {
      const received = this.of(runKey);
      return (windowed ? received.lagsMs.length : received.webhookIds.size) >= count;
    }, timeoutMs);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
