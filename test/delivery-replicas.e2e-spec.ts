import { DeliveryMetrics } from '../src/delivery/delivery.metrics.js';
import { startTestApp, type TestApp } from './support/app.js';
import { createTestDatabase, serverAvailable, type TestDatabase } from './support/database.js';
import { counterTotal, enqueueMany, enqueueOne, LOCAL_CALLBACKS, registerBackend, sql } from './support/deliveries.js';
import { seedTenant, type SeededTenant } from './support/fixtures.js';
import { eventually, TestReceiver } from './support/receiver.js';

// Several instances on one database need a PostgreSQL server (the PGlite fallback serves one
// connection); CI always has one, and there this suite always runs.
const hasServer = await serverAvailable();

const MESSAGES = 2_000;
const BACKENDS = 10;

/**
 * Replicas share the queue with SKIP LOCKED claims and leases, no coordinator. Three instances
 * (each with its own pool, worker and LISTEN connection) on one database drain 2,000 deliveries;
 * with a lease far longer than the run none expires, so every message must arrive exactly once.
 */
describe.runIf(hasServer)('three replicas on one database', () => {
  let database: TestDatabase;
  let receiver: TestReceiver;
  const replicas: TestApp[] = [];
  let seed: SeededTenant;

  beforeAll(async () => {
    database = await createTestDatabase();
    receiver = await TestReceiver.start();
    receiver.respond = () => ({ status: 200, body: '{"status":"success"}' });
    const env = { ...LOCAL_CALLBACKS, DELIVERY_LEASE_MS: '300000', DELIVERY_POLL_MS: '200' };
    // One after the other: the first applies the migrations, and the others find them applied.
    for (let index = 0; index < 3; index++) replicas.push(await startTestApp({ database, env }));
    seed = await seedTenant(replicas[0]);
  });
  afterAll(async () => {
    for (const replica of replicas) await replica.close();
    await receiver?.close();
    await database?.drop();
  });

  it(`deliver ${MESSAGES.toLocaleString('en-US')} enqueued messages: each arrives, none twice, all share the work`, async () => {
    const backends = [];
    for (let index = 0; index < BACKENDS; index++) {
      backends.push(
        await registerBackend(replicas[0], seed.backendUser.token, `r-${index}`, receiver.url(`/r/${index}`)),
      );
    }
    // Enqueued from every replica in turn, 100 per transaction: each commit NOTIFYs all three workers.
    const enqueued = [];
    for (let round = 0; round < MESSAGES / 500; round++) {
      enqueued.push(
        ...(await enqueueMany(replicas[round % replicas.length], {
          tenantId: seed.tenant.id,
          backendIds: backends.map((backend) => backend.id),
          count: 500,
          batchSize: 100,
        })),
      );
    }
    const expected = new Set(enqueued.map((delivery) => delivery.webhookId));
    expect(expected.size).toBe(MESSAGES);

    const arrived = () => new Set(receiver.requests.map((request) => request.headers['webhook-id'] as string));
    await eventually(async () => arrived().size >= MESSAGES, 90_000);
    // Every delivery recorded as delivered once; then nothing more can be sent.
    await eventually(async () => {
      const [row] = await sql<{ count: string }>(
        database.url!,
        `select count(*) from deliveries where status = 'SUCCEEDED' and attempts = 1`,
      );
      return Number(row.count) === MESSAGES;
    }, 30_000);

    const duplicates = receiver.requests.length - arrived().size;
    console.log(
      `replicas: ${receiver.requests.length} requests for ${arrived().size} webhook-ids, ${duplicates} arrived twice`,
    );
    expect(arrived()).toEqual(expected);
    expect(duplicates).toBe(0);
    const [attempts] = await sql<{ count: string }>(database.url!, 'select count(*) from delivery_attempts');
    expect(Number(attempts.count)).toBe(MESSAGES);

    // Each replica's own attempts counter: all three took part, and together they made every attempt once.
    const perReplica = await Promise.all(
      replicas.map((replica) => counterTotal(replica.app.get(DeliveryMetrics).attempts)),
    );
    console.log(`replicas: attempts per replica ${perReplica.join(' / ')}`);
    for (const count of perReplica) expect(count).toBeGreaterThan(0);
    expect(perReplica.reduce((sum, count) => sum + count, 0)).toBe(MESSAGES);
  }, 120_000);
});

/**
 * "A new delivery starts within ~100 ms when the system is idle": the measurement is the `delivery`
 * bench. This proves the mechanism: with a poll interval of a minute only LISTEN/NOTIFY can wake
 * the worker in time, and the NOTIFY comes from another instance's enqueue transaction.
 */
describe.runIf(hasServer)('an idle worker on another replica', () => {
  let database: TestDatabase;
  let receiver: TestReceiver;
  let api: TestApp;
  let worker: TestApp;

  beforeAll(async () => {
    database = await createTestDatabase();
    receiver = await TestReceiver.start();
    api = await startTestApp({ database, env: { ...LOCAL_CALLBACKS, DELIVERY_WORKER_ENABLED: 'false' } });
    worker = await startTestApp({ database, env: { ...LOCAL_CALLBACKS, DELIVERY_POLL_MS: '60000' } });
  });
  afterAll(async () => {
    await worker?.close();
    await api?.close();
    await receiver?.close();
    await database?.drop();
  });

  it('is woken by NOTIFY: each delivery enqueued on an idle system arrives within 1 s', async () => {
    const seed = await seedTenant(api);
    const backend = await registerBackend(api, seed.backendUser.token, 'idle', receiver.url('/idle'));
    const latencies: number[] = [];
    for (let index = 0; index < 5; index++) {
      // Idle: nothing in flight, the worker's start-up claim long done, the next poll a minute away.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = Date.now();
      await enqueueOne(api, seed.tenant.id, backend.id, JSON.stringify({ index }));
      await receiver.waitFor(index + 1, 1_000);
      latencies.push(receiver.requests[index].at - started);
    }
    console.log(`idle enqueue-to-receipt over NOTIFY: ${latencies.join(', ')} ms`);
    for (const latency of latencies) expect(latency).toBeLessThan(1_000);
  });
});
