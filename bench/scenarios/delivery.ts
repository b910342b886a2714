import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { DELIVERY_CHANNEL } from '../../src/delivery/delivery.repository.js';
import { newWebhookId } from '../../src/delivery/webhook-signer.js';
import { benchBody } from '../delivery-body.js';
import { registerBackends, seedTenant } from '../support/api.js';
import { cpuBetween, createBenchDatabase, databaseBackendsCpuMs } from '../support/database.js';
import { runScript, type ServerProcess, startServer } from '../support/processes.js';
import { type BenchContext, benchRow, type BenchRow, type Scenario } from '../support/scenario.js';
import { serviceEnv, startService } from '../support/service.js';
import { percentile } from '../support/stats.js';

/** BENCH_DELIVERIES overrides the burst size (default 10,000). */
const MESSAGES = Number(process.env.BENCH_DELIVERIES ?? 10_000);
const WARMUP = 500;
/** 8 backends × the default per-target cap of 16 (DELIVERY_CONCURRENCY / 4) ≥ 64: the cap never binds. */
const BACKENDS = 8;
/** The service's default DELIVERY_CONCURRENCY, passed explicitly, and the raw loop's concurrency. */
const CONCURRENCY = 64;
const ENQUEUE_BATCH = 1_000;
const IDLE_SAMPLES = 50;
const IDLE_PAUSE_MS = 100;
const DRAIN_TIMEOUT_MS = 10 * 60_000;

const now = () => performance.timeOrigin + performance.now();

interface Seeded {
  tenantId: string;
  backends: { id: string; callbackUrl: string; signingSecret: string }[];
}

interface Receipts {
  count: number;
  distinct: number;
  firstAt: number | null;
  lastAt: number | null;
  latenciesMs: number[];
  unreadable: number;
}

interface Measured {
  deliveriesPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  idleP50Ms: number;
  idleP99Ms: number;
  cpuMsPerDelivery: number | null;
  /** PostgreSQL backends' CPU (the service's connections), per delivery; null for the raw loop. */
  databaseCpuMsPerDelivery: number | null;
}

/**
 * The delivery engine against the floor it sits on. The service (child process, its own database)
 * drains MESSAGES deliveries enqueued as a burst, then delivers IDLE_SAMPLES single deliveries
 * enqueued one at a time on an idle system. The raw loop (child process) signs and POSTs the same
 * bodies with the same WebhookSender at the same concurrency, with no database, right before and
 * right after the service's burst (the baseline is the mean of the two). Both send to one
 * receiver process that answers 200 at once over keep-alive and computes enqueue-to-receipt latency
 * from the `enqueuedAt` stamped into each body.
 */
export const delivery: Scenario = {
  name: 'delivery',
  description: `${MESSAGES.toLocaleString('en-US')} queued deliveries and ${IDLE_SAMPLES} idle ones vs a raw sign-and-POST loop`,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const receiver = await startServer('bench/delivery-receiver.js', {}, '/_stats');
    try {
      const { service, raw } = await measure(context, receiver);
      const row = (figure: string, unit: string, pick: (result: Measured) => number | null): BenchRow =>
        benchRow('delivery', figure, unit, pick(service), pick(raw));
      const burst = `${MESSAGES.toLocaleString('en-US')} queued`;
      return [
        row(`throughput, ${burst}`, 'deliveries/s', (result) => result.deliveriesPerSecond),
        row(`enqueue-to-receipt p50, ${burst}`, 'ms', (result) => result.p50Ms),
        row(`enqueue-to-receipt p99, ${burst}`, 'ms', (result) => result.p99Ms),
        row('idle enqueue-to-receipt p50', 'ms', (result) => result.idleP50Ms),
        row('idle enqueue-to-receipt p99', 'ms', (result) => result.idleP99Ms),
        row('sender CPU per delivery', 'ms', (result) => result.cpuMsPerDelivery),
        row('database CPU per delivery', 'ms', (result) => result.databaseCpuMsPerDelivery),
      ];
    } finally {
      await receiver.stop();
    }
  },
};

/**
 * Runs the raw loop's burst right before and right after the service's, and takes the mean as the
 * baseline: on a shared machine the load drifts, and a baseline from one moment would compare the
 * service with a different machine.
 */
async function measure(context: BenchContext, receiver: ServerProcess): Promise<{ service: Measured; raw: Measured }> {
  const database = await createBenchDatabase(context.databaseServerUrl);
  try {
    const env = serviceEnv(database.url, { DELIVERY_CONCURRENCY: String(CONCURRENCY) });
    const app = await startService(env);
    const client = new pg.Client({ connectionString: database.url });
    await client.connect();
    try {
      const seed = await seedBackends(app.baseUrl, env.ADMIN_TOKEN, receiver.baseUrl);
      const rawBefore = await rawBurst(context, receiver, seed);
      const enqueue = (from: number, count: number) => enqueueBatch(client, seed, from, count);

      context.log(`delivery: warming the service up with ${WARMUP} deliveries`);
      await enqueue(0, WARMUP);
      await waitForReceipts(receiver, WARMUP, DRAIN_TIMEOUT_MS);
      await waitUntilDrained(client);
      await control(receiver, 'POST', '/_reset');

      context.log(`delivery: service draining ${MESSAGES.toLocaleString('en-US')} queued deliveries`);
      const cpuBefore = app.cpuMs();
      const databaseBefore = await databaseBackendsCpuMs(client);
      const enqueueStarted = now();
      for (let from = 0; from < MESSAGES; from += ENQUEUE_BATCH) {
        await enqueue(WARMUP + from, Math.min(ENQUEUE_BATCH, MESSAGES - from));
      }
      context.log(`delivery: enqueued in ${Math.round(now() - enqueueStarted)} ms`);
      await waitForReceipts(receiver, MESSAGES, DRAIN_TIMEOUT_MS);
      const cpuAfter = app.cpuMs();
      const databaseAfter = await databaseBackendsCpuMs(client);
      const burst = await receipts(receiver);
      await waitUntilDrained(client);
      const failed = await client.query<{ count: string }>(
        `select count(*) from deliveries where status <> 'SUCCEEDED' or attempts <> 1`,
      );
      check('service', burst, MESSAGES);
      context.log(
        `delivery: service: ${burst.count - burst.distinct} arrived twice, ` +
          `${failed.rows[0].count} deliveries needed more than one attempt or did not succeed`,
      );

      context.log(`delivery: service idle latency, ${IDLE_SAMPLES} single deliveries ${IDLE_PAUSE_MS} ms apart`);
      await control(receiver, 'POST', '/_reset');
      for (let index = 0; index < IDLE_SAMPLES; index++) {
        await new Promise((done) => setTimeout(done, IDLE_PAUSE_MS));
        await enqueue(WARMUP + MESSAGES + index, 1);
        await waitForReceipts(receiver, index + 1, 10_000);
      }
      const idle = await receipts(receiver);
      check('service idle', idle, IDLE_SAMPLES);

      const rawAfter = await rawBurst(context, receiver, seed);
      const rawIdle = await rawIdleLatency(context, receiver, seed);
      const cpuKnown = cpuBefore !== null && cpuAfter !== null;
      const service: Measured = {
        ...burstFigures(burst),
        idleP50Ms: percentile(idle.latenciesMs, 0.5),
        idleP99Ms: percentile(idle.latenciesMs, 0.99),
        cpuMsPerDelivery: cpuKnown ? (cpuAfter - cpuBefore) / MESSAGES : null,
        databaseCpuMsPerDelivery: cpuBetween(databaseBefore, databaseAfter) / MESSAGES,
      };
      context.log(
        `delivery: raw loop ${Math.round(rawBefore.deliveriesPerSecond)} deliveries/s before the service, ` +
          `${Math.round(rawAfter.deliveriesPerSecond)} after; the service ${Math.round(service.deliveriesPerSecond)}`,
      );
      const mean = (pick: (run: RawBurst) => number) => (pick(rawBefore) + pick(rawAfter)) / 2;
      const raw: Measured = {
        deliveriesPerSecond: mean((run) => run.deliveriesPerSecond),
        p50Ms: mean((run) => run.p50Ms),
        p99Ms: mean((run) => run.p99Ms),
        cpuMsPerDelivery: mean((run) => run.cpuMsPerDelivery),
        ...rawIdle,
        databaseCpuMsPerDelivery: null,
      };
      return { service, raw };
    } finally {
      await client.end();
      await app.stop();
    }
  } finally {
    await database.drop();
  }
}

type RawBurst = Pick<Measured, 'deliveriesPerSecond' | 'p50Ms' | 'p99Ms'> & { cpuMsPerDelivery: number };

function rawEnv(receiver: ServerProcess, seed: Seeded): Record<string, string> {
  return {
    RAW_URLS: seed.backends.map((backend) => backend.callbackUrl).join(','),
    RAW_SECRET: seed.backends[0].signingSecret,
    RAW_CONCURRENCY: String(CONCURRENCY),
    RAW_WARMUP: String(WARMUP),
    RAW_RESET_URL: `${receiver.baseUrl}/_reset`,
  };
}

async function rawBurst(context: BenchContext, receiver: ServerProcess, seed: Seeded): Promise<RawBurst> {
  context.log(`delivery: raw loop sending ${MESSAGES.toLocaleString('en-US')} bodies`);
  const run = await runRawSender({ ...rawEnv(receiver, seed), RAW_MODE: 'burst', RAW_COUNT: String(MESSAGES) });
  const burst = await receipts(receiver);
  check('raw loop', burst, MESSAGES);
  return { ...burstFigures(burst), cpuMsPerDelivery: run.cpuMs / MESSAGES };
}

async function rawIdleLatency(
  context: BenchContext,
  receiver: ServerProcess,
  seed: Seeded,
): Promise<Pick<Measured, 'idleP50Ms' | 'idleP99Ms'>> {
  context.log(`delivery: raw loop idle latency, ${IDLE_SAMPLES} single sends ${IDLE_PAUSE_MS} ms apart`);
  await runRawSender({
    ...rawEnv(receiver, seed),
    RAW_MODE: 'idle',
    RAW_COUNT: String(IDLE_SAMPLES),
    RAW_PAUSE_MS: String(IDLE_PAUSE_MS),
  });
  const idle = await receipts(receiver);
  check('raw loop idle', idle, IDLE_SAMPLES);
  return { idleP50Ms: percentile(idle.latenciesMs, 0.5), idleP99Ms: percentile(idle.latenciesMs, 0.99) };
}

/** Runs bench/raw-sender.js to completion; it prints one JSON line with its own figures. */
async function runRawSender(env: Record<string, string>): Promise<{ sent: number; failures: number; cpuMs: number }> {
  const stdout = await runScript('bench/raw-sender.js', env, DRAIN_TIMEOUT_MS);
  const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as { sent: number; failures: number; cpuMs: number };
  if (result.failures > 0) throw new Error(`raw loop: ${result.failures} failed sends; the figures are void`);
  return result;
}

/**
 * The worker's input, written the fast way: one multi-row INSERT per batch and a NOTIFY, committed
 * together, as DeliveryService.enqueue would leave them (its columns: DeliveryRepository.insert).
 * `enqueuedAt` is stamped before the transaction starts, so latency includes the commit.
 */
async function enqueueBatch(client: pg.Client, seed: Seeded, from: number, count: number): Promise<void> {
  const enqueuedAt = now();
  const rows = Array.from({ length: count }, (_, index) => {
    const backend = seed.backends[(from + index) % seed.backends.length];
    return { backend, body: benchBody(from + index, enqueuedAt) };
  });
  await client.query('begin');
  try {
    await client.query(
      `insert into deliveries (id, tenant_id, webhook_id, backend_id, url, explicit_url, method, headers, body, status,
                               next_attempt_at, origin_type, origin_id, created_at, updated_at)
       select unnest($1::uuid[]), $2::uuid, unnest($3::text[]), unnest($4::uuid[]), unnest($5::text[]), false, 'POST',
              '{}'::jsonb, unnest($6::text[]), 'PENDING', now(), 'trigger_run', unnest($7::uuid[]), now(), now()`,
      [
        rows.map(() => randomUUID()),
        seed.tenantId,
        rows.map(() => newWebhookId()),
        rows.map((row) => row.backend.id),
        rows.map((row) => row.backend.callbackUrl),
        rows.map((row) => row.body),
        rows.map(() => randomUUID()),
      ],
    );
    await client.query(`select pg_notify($1, '')`, [DELIVERY_CHANNEL]);
    await client.query('commit');
  } catch (error) {
    await client.query('rollback');
    throw error;
  }
}

/** Until no delivery waits or is being sent (the last results are recorded a moment after receipt). */
async function waitUntilDrained(client: pg.Client): Promise<void> {
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  for (;;) {
    const { rows } = await client.query<{ count: string }>(
      `select count(*) from deliveries where status in ('PENDING', 'SENDING')`,
    );
    if (Number(rows[0].count) === 0) return;
    if (Date.now() > deadline) throw new Error(`${rows[0].count} deliveries still queued after the drain timeout`);
    await new Promise((done) => setTimeout(done, 100));
  }
}

async function waitForReceipts(receiver: ServerProcess, count: number, timeoutMs: number): Promise<void> {
  const response = await fetch(`${receiver.baseUrl}/_wait?count=${count}&timeoutMs=${timeoutMs}`, {
    signal: AbortSignal.timeout(timeoutMs + 5_000),
  });
  if (!response.ok) {
    throw new Error(`expected ${count} receipts within ${timeoutMs} ms; got ${(await response.json()).count}`);
  }
}

async function receipts(receiver: ServerProcess): Promise<Receipts> {
  return (await control(receiver, 'GET', '/_stats')) as Receipts;
}

async function control(receiver: ServerProcess, method: string, path: string): Promise<unknown> {
  const response = await fetch(receiver.baseUrl + path, { method });
  if (!response.ok) throw new Error(`receiver ${method} ${path} answered ${response.status}`);
  return response.json();
}

/** Every message arrived, each stamped: otherwise the figures describe something else. */
function check(what: string, received: Receipts, expected: number): void {
  if (received.distinct < expected || received.latenciesMs.length < expected || received.unreadable > 0) {
    throw new Error(
      `${what}: ${received.distinct} distinct of ${expected} expected messages arrived ` +
        `(${received.unreadable} without enqueuedAt); the figures are void`,
    );
  }
}

function burstFigures(received: Receipts): Pick<Measured, 'deliveriesPerSecond' | 'p50Ms' | 'p99Ms'> {
  const spanSeconds = (received.lastAt! - received.firstAt!) / 1000;
  return {
    deliveriesPerSecond: received.count / spanSeconds,
    p50Ms: percentile(received.latenciesMs, 0.5),
    p99Ms: percentile(received.latenciesMs, 0.99),
  };
}

/** A tenant, a backend machine user and BACKENDS backends calling the receiver, through the public API. */
async function seedBackends(baseUrl: string, adminToken: string, receiverUrl: string): Promise<Seeded> {
  const tenant = await seedTenant(baseUrl, adminToken, ['backend']);
  const backends = await registerBackends(baseUrl, tenant.machineToken, BACKENDS, (index) => ({
    name: `receiver-${index}`,
    callbackUrl: `${receiverUrl}/backend-${index}`,
  }));
  return { tenantId: tenant.tenantId, backends };
}
