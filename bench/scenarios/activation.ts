import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { activationUrl } from '../../src/flows/execution-engine.js';
import { call, seedTenant } from '../support/api.js';
import { count, cpuBetween, createBenchDatabase, databaseBackendsCpuMs } from '../support/database.js';
import { burst, type BurstOptions, type BurstResult } from '../support/load.js';
import type { ServerProcess } from '../support/processes.js';
import { type BenchContext, benchRow, type BenchRow, type Scenario } from '../support/scenario.js';
import { serviceEnv, startService } from '../support/service.js';
import { percentile, sleep } from '../support/stats.js';

/** BENCH_ACTIVATIONS and BENCH_WAITING_RSS override the two sizes (defaults from the issue). */
const ACTIVATIONS = Number(process.env.BENCH_ACTIVATIONS ?? 10_000);
const WAITING_FOR_RSS = Number(process.env.BENCH_WAITING_RSS ?? 100_000);
const WARMUP = 500;
/** The issue fixes 64 connections for this scenario (BENCH_CONNECTIONS does not apply). */
const CONNECTIONS = 64;
/** The service's default DATABASE_POOL_SIZE, passed explicitly; the UPDATE loop gets the same pool. */
const POOL_SIZE = 10;
const CLONE_BATCH = 10_000;

interface Seeded {
  operatorToken: string;
  flowId: string;
  startTriggerId: string;
  approveTriggerId: string;
}

interface Rate {
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Service process CPU per operation (ms); null for the UPDATE loop (it runs in this process). */
  serverCpuMs: number | null;
  /** CPU of the PostgreSQL backends of the bench database per operation (ms, from /proc). */
  databaseCpuMs: number;
}

/**
 * Activation of a mid-flow callback step with `execution=any` on the built service (child process,
 * its own scratch database, default configuration: its flow worker finishes each resumed
 * execution in the background, as in production), next to the database's own ceiling measured in
 * the same run: a plain single-row `UPDATE executions … WHERE id = $1` loop at the same
 * concurrency over a pg pool of the service's size. Then flow starts per second through the
 * flow-starting callback, and the service's resident memory with WAITING_FOR_RSS executions
 * waiting (restarted, a few requests served), next to the same after a fresh start with one.
 *
 * Waiting executions are made the fast way: one is started through the API and left by the
 * engine waiting at "Approve"; its row and history are then cloned with SQL, with the execution
 * id replaced inside the context (run.id, execution.id, callback URLs) and distinct waiting_since.
 */
export const activation: Scenario = {
  name: 'activation',
  description:
    `execution=any on ${ACTIVATIONS.toLocaleString('en-US')} waiting, ${CONNECTIONS} connections, vs a ` +
    `single-row UPDATE loop; flow starts/s; RSS with ${WAITING_FOR_RSS.toLocaleString('en-US')} waiting`,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const database = await createBenchDatabase(context.databaseServerUrl);
    const db = new pg.Client({ connectionString: database.url });
    await db.connect();
    const env = serviceEnv(database.url, { DATABASE_POOL_SIZE: String(POOL_SIZE) });
    let app: ServerProcess | null = null;
    try {
      app = await startService(env);
      const seed = await seedFlow(app.baseUrl, env.ADMIN_TOKEN);
      await keepTemplate(db, await startOne(app.baseUrl, seed));
      const idleRss = await touchAndReadRss(app.baseUrl, seed);
      await settle(db, seed);

      // 1. execution=any, every call resuming one of ACTIVATIONS waiting executions.
      await clone(db, WARMUP + ACTIVATIONS - (await waitingAt(db, seed)));
      await expectWaiting(db, seed, WARMUP + ACTIVATIONS);
      const activations = () =>
        count(db, `select count(*) from flow_events where flow_id = $1 and type = 'activate'`, [seed.flowId]);
      const resumedBefore = await activations();
      const anyUrl = activationUrl(app.baseUrl, seed.flowId, seed.approveTriggerId) + '?execution=any';
      await hammer({ url: anyUrl, connections: 8, amount: WARMUP });
      await expectWaiting(db, seed, ACTIVATIONS);
      context.log(`activation: ${ACTIVATIONS} execution=any calls over ${CONNECTIONS} connections`);
      const service = await measured(app, db, () =>
        hammer({ url: anyUrl, connections: CONNECTIONS, amount: ACTIVATIONS }),
      );
      if (service.result.failures > 0)
        throw new Error(`execution=any: ${service.result.failures} calls failed; the figures are void`);
      await expectWaiting(db, seed, 0);
      // Every call resumed exactly one execution: as many `activate` events as calls, none waiting.
      const resumed = (await activations()) - resumedBefore;
      if (resumed !== WARMUP + ACTIVATIONS)
        throw new Error(`expected ${WARMUP + ACTIVATIONS} activations, saw ${resumed}`);

      // 2. The database's ceiling: the same number of single-row UPDATEs at the same concurrency,
      // once the flow worker has finished the resumed executions (it would compete, and lock rows).
      await settle(db, seed);
      context.log(`activation: ${ACTIVATIONS} single-row UPDATEs, ${CONNECTIONS} callers, pool of ${POOL_SIZE}`);
      const ids = (
        await db.query<{ id: string }>(`select id from executions where flow_id = $1 order by id`, [seed.flowId])
      ).rows.map((row) => row.id);
      const baseline = await updateLoop(database.url, db, ids);

      // 3. Flow starts through the flow-starting callback, for the run's duration.
      context.log(`activation: flow starts for ${context.durationSeconds} s over ${CONNECTIONS} connections`);
      const startUrl = activationUrl(app.baseUrl, seed.flowId, seed.startTriggerId);
      await hammer({ url: startUrl, connections: 8, durationSeconds: 2 });
      const starts = await measured(app, db, () =>
        hammer({ url: startUrl, connections: CONNECTIONS, durationSeconds: context.durationSeconds }),
      );
      if (starts.result.failures > 0)
        throw new Error(`flow starts: ${starts.result.failures} calls failed; the figures are void`);

      // 4. Resident memory with WAITING_FOR_RSS waiting, after a restart and a few requests.
      await settle(db, seed);
      const waitingNow = await count(db, `select count(*) from executions where status = 'waiting'`);
      context.log(`activation: topping up to ${WAITING_FOR_RSS} waiting executions, restarting the service`);
      await clone(db, Math.max(0, WAITING_FOR_RSS - waitingNow));
      if ((await count(db, `select count(*) from executions where status = 'waiting'`)) !== WAITING_FOR_RSS)
        throw new Error(`expected ${WAITING_FOR_RSS} waiting executions`);
      await app.stop();
      app = await startService(env);
      const loadedRss = await touchAndReadRss(app.baseUrl, seed);

      const row = (figure: string, unit: string, value: number | null, base: number | null): BenchRow =>
        benchRow('activation', figure, unit, value, base);
      const any = `execution=any, ${ACTIVATIONS.toLocaleString('en-US')} waiting, ${CONNECTIONS} conns`;
      return [
        row(`${any}: throughput (baseline: UPDATE … WHERE id)`, 'ops/s', service.rate.perSecond, baseline.perSecond),
        row(`${any}: p50 latency`, 'ms', service.rate.p50Ms, baseline.p50Ms),
        row(`${any}: p99 latency`, 'ms', service.rate.p99Ms, baseline.p99Ms),
        row(`${any}: service CPU per activation`, 'ms', service.rate.serverCpuMs, null),
        row(`${any}: database CPU per operation`, 'ms', service.rate.databaseCpuMs, baseline.databaseCpuMs),
        row(
          `flow starts (flow-starting callback, ${CONNECTIONS} conns): throughput`,
          'starts/s',
          starts.rate.perSecond,
          null,
        ),
        row('flow starts: p99 latency', 'ms', starts.rate.p99Ms, null),
        row('flow starts: service CPU per start', 'ms', starts.rate.serverCpuMs, null),
        row(
          `RSS with ${WAITING_FOR_RSS.toLocaleString('en-US')} waiting (baseline: fresh start, 1 waiting)`,
          'MB',
          loadedRss,
          idleRss,
        ),
      ];
    } finally {
      await app?.stop();
      await db.end();
      await database.drop();
    }
  },
};

/**
 * POSTs `{}` to `url` with autocannon, sampling every 10 ms so that a fixed-`amount` run is timed as
 * exactly as the UPDATE loop (performance.now()), not rounded up to autocannon's 1 s tick.
 */
function hammer(options: Omit<BurstOptions, 'sampleIntervalMs'>): Promise<BurstResult> {
  return burst({ ...options, sampleIntervalMs: 10 });
}

/** Runs `load` and reads the service's and the database backends' CPU around it. */
async function measured(
  app: ServerProcess,
  db: pg.Client,
  load: () => Promise<BurstResult>,
): Promise<{ result: BurstResult; rate: Rate }> {
  const cpuBefore = app.cpuMs();
  const databaseBefore = await databaseBackendsCpuMs(db);
  const result = await load();
  const cpuAfter = app.cpuMs();
  const databaseAfter = await databaseBackendsCpuMs(db);
  return {
    result,
    rate: {
      perSecond: result.done / result.seconds,
      p50Ms: result.p50Ms,
      p99Ms: result.p99Ms,
      serverCpuMs: cpuBefore !== null && cpuAfter !== null ? (cpuAfter - cpuBefore) / result.done : null,
      databaseCpuMs: cpuBetween(databaseBefore, databaseAfter) / result.done,
    },
  };
}

/**
 * CONNECTIONS callers sharing a pg pool of POOL_SIZE, each taking the next id and running one
 * autocommitted `UPDATE … WHERE id = $1`; latency counts the wait for a pooled connection, as the
 * service's does. The first WARMUP updates are not measured.
 */
async function updateLoop(url: string, db: pg.Client, ids: string[]): Promise<Rate> {
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE });
  const update = (id: string) => pool.query(`update executions set updated_at = now() where id = $1`, [id]);
  try {
    for (let index = 0; index < Math.min(WARMUP, ids.length); index++) await update(ids[index]);
    const queue = ids.slice(0, ACTIVATIONS);
    const latencies: number[] = [];
    let next = 0;
    const databaseBefore = await databaseBackendsCpuMs(db);
    const started = performance.now();
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        while (next < queue.length) {
          const id = queue[next++];
          const at = performance.now();
          const result = await update(id);
          if (result.rowCount !== 1) throw new Error(`UPDATE of ${id} touched ${result.rowCount} rows`);
          latencies.push(performance.now() - at);
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    const databaseAfter = await databaseBackendsCpuMs(db);
    return {
      perSecond: queue.length / seconds,
      p50Ms: percentile(latencies, 0.5),
      p99Ms: percentile(latencies, 0.99),
      serverCpuMs: null,
      databaseCpuMs: cpuBetween(databaseBefore, databaseAfter) / queue.length,
    };
  } finally {
    await pool.end();
  }
}

/** A tenant, an operator, and a flow [callback "Submitted"] → [callback "Approve"], through the API. */
async function seedFlow(baseUrl: string, adminToken: string): Promise<Seeded> {
  const { applicationId, machineToken } = await seedTenant(baseUrl, adminToken, ['operator']);
  const flow = await call(baseUrl, 'POST', `/api/applications/${applicationId}/flows`, machineToken, {
    name: 'Approvals',
    steps: [
      { type: 'callback', name: 'Submitted' },
      { type: 'callback', name: 'Approve' },
    ],
  });
  return {
    operatorToken: machineToken,
    flowId: flow.id,
    startTriggerId: flow.steps[0].triggerId,
    approveTriggerId: flow.steps[1].triggerId,
  };
}

/** Starts one execution by API and waits until the engine has it waiting at "Approve"; its id. */
async function startOne(baseUrl: string, seed: Seeded): Promise<string> {
  const started = await call(baseUrl, 'POST', `/api/flows/${seed.flowId}/executions`, seed.operatorToken, {});
  const deadline = Date.now() + 30_000;
  for (;;) {
    const execution = await call(baseUrl, 'GET', `/api/executions/${started.id}`, seed.operatorToken);
    if (execution.status === 'waiting' && execution.currentStep === 'Approve') return started.id;
    if (Date.now() > deadline) throw new Error(`execution ${started.id} never reached "Approve"`);
    await sleep(50);
  }
}

/** The template execution's row and history as the engine wrote them, kept aside in this session. */
async function keepTemplate(db: pg.Client, id: string): Promise<void> {
  await db.query(`create temp table template_execution (like executions)`);
  await db.query(`insert into template_execution select * from executions where id = $1`, [id]);
  await db.query(`create temp table template_events (like flow_events)`);
  await db.query(`insert into template_events select * from flow_events where execution_id = $1`, [id]);
}

/**
 * `count` copies of the template (row and history), in batches of CLONE_BATCH, each with its own
 * id in place of the template's everywhere in its context and history, waiting since a distinct
 * instant (the template's plus its ordinal in microseconds).
 */
async function clone(db: pg.Client, count: number): Promise<void> {
  for (let done = 0; done < count; done += CLONE_BATCH) {
    const ids = Array.from({ length: Math.min(CLONE_BATCH, count - done) }, () => randomUUID());
    await db.query('begin');
    try {
      await db.query(
        `insert into executions (id, tenant_id, flow_id, flow_version, status, step_index, step_phase, run_at,
                                 awaiting_delivery_id, waiting_trigger_id, waiting_since, waiting_deadline, context,
                                 created_at, updated_at, finished_at)
         select copy.id, t.tenant_id, t.flow_id, t.flow_version, t.status, t.step_index, t.step_phase, t.run_at,
                t.awaiting_delivery_id, t.waiting_trigger_id, t.waiting_since + copy.ord * interval '1 microsecond',
                t.waiting_deadline, replace(t.context::text, t.id::text, copy.id::text)::jsonb, t.created_at,
                t.updated_at, t.finished_at
           from template_execution t, unnest($1::uuid[]) with ordinality as copy(id, ord)`,
        [ids],
      );
      await db.query(
        `insert into flow_events (id, tenant_id, flow_id, execution_id, trigger_id, at, type, step, detail)
         select gen_random_uuid(), e.tenant_id, e.flow_id, copy.id, e.trigger_id, e.at, e.type, e.step,
                replace(e.detail::text, e.execution_id::text, copy.id::text)::jsonb
           from unnest($1::uuid[]) with ordinality as copy(id, ord), template_events e
          order by copy.ord, e.seq`,
        [ids],
      );
      await db.query('commit');
    } catch (error) {
      await db.query('rollback');
      throw error;
    }
  }
  await db.query('analyze executions');
  await db.query('analyze flow_events');
}

async function waitingAt(db: pg.Client, seed: Seeded): Promise<number> {
  return count(db, `select count(*) from executions where status = 'waiting' and waiting_trigger_id = $1`, [
    seed.approveTriggerId,
  ]);
}

async function expectWaiting(db: pg.Client, seed: Seeded, expected: number): Promise<void> {
  const waiting = await waitingAt(db, seed);
  if (waiting !== expected) throw new Error(`expected ${expected} executions waiting at Approve, found ${waiting}`);
}

/** Until the flow worker has moved every started or resumed execution on (nothing left running). */
async function settle(db: pg.Client, seed: Seeded): Promise<void> {
  const deadline = Date.now() + 5 * 60_000;
  while (
    (await count(db, `select count(*) from executions where status = 'running' and flow_id = $1`, [seed.flowId])) > 0
  ) {
    if (Date.now() > deadline) throw new Error('executions still running after 5 minutes');
    await sleep(200);
  }
}

/**
 * A few ordinary requests (list the waiting executions, read the flow, start one, resume one, the
 * metrics), then the process's resident set size as the service reports it, in MB.
 */
async function touchAndReadRss(baseUrl: string, seed: Seeded): Promise<number> {
  const token = seed.operatorToken;
  await call(baseUrl, 'GET', `/api/flows/${seed.flowId}`, token);
  await call(baseUrl, 'GET', `/api/flows/${seed.flowId}/executions?status=waiting&limit=200&includeTotal=true`, token);
  for (const url of [
    activationUrl(baseUrl, seed.flowId, seed.startTriggerId),
    activationUrl(baseUrl, seed.flowId, seed.approveTriggerId) + '?execution=any',
  ]) {
    const response = await fetch(url, { method: 'POST' });
    if (response.status !== 200) throw new Error(`POST ${url} answered ${response.status}`);
  }
  const metrics = await (await fetch(`${baseUrl}/metrics`)).text();
  const match = /^switchyard_process_resident_memory_bytes (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(metrics);
  if (!match) throw new Error('switchyard_process_resident_memory_bytes is not in /metrics');
  return Number(match[1]) / (1024 * 1024);
}
