import { mkdtempSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
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
import { enqueueOne, getDelivery, LOCAL_CALLBACKS, registerBackend, sql } from './support/deliveries.js';
import { seedTenant, type SeededTenant } from './support/fixtures.js';
import { eventually, TestReceiver } from './support/receiver.js';

// Two built services and an in-process one on one database need a PostgreSQL server (the PGlite
// fallback serves one connection); CI always has one, and there this suite always runs.
const hasServer = await serverAvailable();

const TIMEOUT_MS = 5_000;
const LEASE_MS = 6_000;

/**
 * SPEC §5: "nothing is lost if a replica is killed at any moment". A replica in its own process
 * (`node dist/src/main.js`, as in production) is SIGKILLed while its attempt hangs on the
 * receiver; no shutdown hook runs, so the delivery stays SENDING under a lease nobody will end.
 * Another replica must take it back once the lease expires and deliver it with the same
 * webhook-id.
 */
describe.runIf(hasServer)('a replica killed mid-delivery', () => {
  let database: TestDatabase;
  let api: TestApp;
  let receiver: TestReceiver;
  let seed: SeededTenant;
  let cwd: string;
  const children: BuiltApp[] = [];

  const spawnReplica = async () => {
    const replica = spawnBuiltApp(cwd, {
      ...LOCAL_CALLBACKS,
      PORT: String(await freePort()),
      DATABASE_URL: database.url!,
      SECRETS_KEY: TEST_SECRETS_KEY,
      NODE_ENV: 'test',
      LOG_LEVEL: 'warn',
      DELIVERY_TIMEOUT_MS: String(TIMEOUT_MS),
      DELIVERY_LEASE_MS: String(LEASE_MS),
      DELIVERY_POLL_MS: '100',
      MIGRATE_ON_START: 'true',
    });
    children.push(replica);
    await waitUntilReady(replica);
    return replica;
  };

  beforeAll(async () => {
    ensureBuilt();
    database = await createTestDatabase();
    receiver = await TestReceiver.start();
    cwd = mkdtempSync(join(tmpdir(), 'switchyard-crash-'));
    // API only (DELIVERY_WORKER_ENABLED=false): it seeds and enqueues, and can never be the replica
    // that sends, so the child process is the one holding the lease when it dies.
    api = await startTestApp({ database, env: { ...LOCAL_CALLBACKS, DELIVERY_WORKER_ENABLED: 'false' } });
    seed = await seedTenant(api);
  }, 120_000);
  afterAll(async () => {
    killAll(children);
    await api?.close();
    await receiver?.close();
    await database?.drop();
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  it('SIGKILL during an attempt: another instance delivers after the lease expires, same webhook-id', async () => {
    const backend = await registerBackend(api, seed.backendUser.token, 'crash', receiver.url('/crash'));
    // The first attempt never gets an answer (the receiver is slow, or the network ate it); the
    // retry is answered at once.
    receiver.respond = (_request, index) =>
      index === 0 ? { hang: true } : { status: 200, body: '{"status":"success"}' };

    const first = await spawnReplica();
    const enqueued = await enqueueOne(api, seed.tenant.id, backend.id, '{"crash":true}');
    await receiver.waitFor(1);
    first.child.kill('SIGKILL');
    expect(await within(first.exited, 5_000, 'SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });

    // Nobody recorded anything: the row is leased to a dead process.
    const [row] = await sql<{ status: string; attempts: number; leased_until: Date }>(
      database.url!,
      'select status, attempts, leased_until from deliveries where id = $1',
      [enqueued.id],
    );
    expect(row).toMatchObject({ status: 'SENDING', attempts: 1 });
    const leaseEnd = row.leased_until.getTime();

    const second = await spawnReplica();
    await receiver.waitFor(2, LEASE_MS + 20_000);
    const [lost, retried] = receiver.requests;
    // Not before the lease ran out (allow for clock reading between PostgreSQL and this process).
    expect(retried.at).toBeGreaterThanOrEqual(leaseEnd - 250);
    expect(retried.at - lost.at).toBeGreaterThanOrEqual(LEASE_MS - 2_000);
    expect(retried.headers['webhook-id']).toBe(enqueued.webhookId);
    expect(lost.headers['webhook-id']).toBe(enqueued.webhookId);
    expect(retried.body).toBe('{"crash":true}');

    const delivered = await eventually(async () => {
      const delivery = await getDelivery(api, seed.backendUser.token, enqueued.id);
      return delivery.status === 'SUCCEEDED' && delivery;
    });
    // The lost attempt counts, and the log says what happened to it.
    expect(delivered.attempts).toBe(2);
    expect(delivered.attemptLog).toHaveLength(2);
    expect(delivered.attemptLog[0]).toMatchObject({ statusCode: null, error: expect.stringMatching(/^lease expired/) });
    expect(delivered.attemptLog[1]).toMatchObject({ statusCode: 200, error: null });
    // Each attempt names the replica that made it, the lost one included (from its expired lease).
    const replicas = await sql<{ replica: string }>(
      database.url!,
      'select replica from delivery_attempts where delivery_id = $1 order by attempt',
      [enqueued.id],
    );
    expect(replicas.map((row) => row.replica)).toEqual([
      `${hostname()}:${first.child.pid}`,
      `${hostname()}:${second.child.pid}`,
    ]);
    // Exactly the two receipts: nothing lost, no third send.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(receiver.requests).toHaveLength(2);
  }, 60_000);
});
