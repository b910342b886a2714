import { randomUUID } from 'node:crypto';
import { MikroORM } from '@mikro-orm/postgresql';
import { DeliveryService } from '../src/delivery/delivery.service.js';
import { startTestApp, type TestApp } from './support/app.js';
import { createTestDatabase, serverAvailable, type TestDatabase } from './support/database.js';
import { bearer, seedTenant, type SeededTenant } from './support/fixtures.js';
import { eventually } from './support/receiver.js';
import { SeedReceiver } from './support/seed-receiver.js';

// Two instances on one database need a PostgreSQL server (the PGlite fallback gives each instance its own);
// CI always has one, and there this suite always runs.
const hasServer = await serverAvailable();

/**
 * The SSRF guard's second half (SPEC §3 Backends): the address is checked again at every
 * connection, on the address the socket would use. A backend registered while its host was
 * allowed, then delivered by a replica whose CALLBACK_ALLOWED_HOSTS no longer allows it, must not
 * reach the receiver at all: not one TCP connection.
 *
 * `localhost` is the name: it resolves to 127.0.0.1 (a loopback address) through the system
 * resolver, and a name, unlike an IP literal, can only be judged when it is looked up.
 */
describe.runIf(hasServer)('address guard at connect time', () => {
  let database: TestDatabase;
  let receiver: SeedReceiver;
  let app: TestApp | null = null;

  const env = (allowedHosts: string) => ({
    ALLOW_HTTP_CALLBACKS: 'true',
    CALLBACK_ALLOWED_HOSTS: allowedHosts,
    DELIVERY_RETRY_SCHEDULE: '0,100ms',
    DELIVERY_POLL_MS: '50',
  });
  /** One replica at a time on the shared database, so the one under test is the only one that claims. */
  async function replica(allowedHosts: string): Promise<TestApp> {
    await app?.close();
    app = await startTestApp({ database, env: env(allowedHosts) });
    return app;
  }

  beforeAll(async () => {
    database = await createTestDatabase();
    receiver = await SeedReceiver.start();
  });
  afterAll(async () => {
    await app?.close();
    await receiver.close();
    await database.drop();
  });

  it('never connects to a name resolving to 127.0.0.1 once this replica does not allow it', async () => {
    const allowing = await replica('localhost');
    const seed: SeededTenant = await seedTenant(allowing);
    const token = seed.backendUser.token;
    const registered = await allowing.http
      .post('/api/machine/register-backend')
      .set(bearer(token))
      .send({ name: 'local', callbackUrl: receiver.url('/triggers/callback', 'localhost') })
      .expect(201);
    receiver.trust(registered.body.signingSecret);

    const strict = await replica('10.0.0.0/8');
    const enqueued = await strict.app
      .get(MikroORM)
      .em.fork()
      .transactional((em) =>
        strict.app.get(DeliveryService).enqueue(em, {
          tenantId: seed.tenant.id,
          target: { backendId: registered.body.id },
          body: '{"guarded":true}',
          origin: { type: 'trigger_run', id: randomUUID() },
        }),
      );
    const deliveryPath = `/api/deliveries/${enqueued.id}`;
    const dead = await eventually(async () => {
      const { body } = await strict.http.get(deliveryPath).set(bearer(token)).expect(200);
      return body.status === 'DEAD' && body;
    });
    expect(dead.attempts).toBe(2);
    for (const attempt of dead.attemptLog) {
      expect(attempt.statusCode).toBeNull();
      // Where localhost also resolves to ::1, that may be the address named.
      expect(attempt.error).toMatch(/^address forbidden: .*localhost.*(127\.0\.0\.1|::1)/);
    }
    expect(receiver.connections).toBe(0);

    // Control: the same delivery, replayed from a replica that allows the name, does arrive. So it was
    // the guard that kept the first replica out, not an unreachable receiver.
    const allowingAgain = await replica('localhost');
    await allowingAgain.http.post(`${deliveryPath}/replay`).set(bearer(token)).expect(202);
    await eventually(async () => {
      const { body } = await allowingAgain.http.get(deliveryPath).set(bearer(token)).expect(200);
      return body.status === 'SUCCEEDED';
    });
    expect(receiver.connections).toBeGreaterThan(0);
    expect(receiver.requestsFor(enqueued.webhookId)).toHaveLength(1);
    expect(receiver.requests[0].verifiedBy.standardWebhooks).toBe(registered.body.signingSecret);
  });
});
