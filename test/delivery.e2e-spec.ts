import { MikroORM } from '@mikro-orm/postgresql';
import { Webhook } from 'standardwebhooks';
import { DeliveryService } from '../src/delivery/delivery.service.js';
import { startTestApp, type TestApp } from './support/app.js';
import { bearer, seedTenant, type SeededTenant } from './support/fixtures.js';
import { eventually, TestReceiver } from './support/receiver.js';

describe('delivery engine', () => {
  let t: TestApp;
  let receiver: TestReceiver;
  let seed: SeededTenant;
  let backend: { id: string; signingSecret: string };

  beforeAll(async () => {
    receiver = await TestReceiver.start();
    t = await startTestApp({
      env: {
        ALLOW_HTTP_CALLBACKS: 'true',
        CALLBACK_ALLOWED_HOSTS: '127.0.0.1',
        DELIVERY_RETRY_SCHEDULE: '0,100ms,100ms',
        DELIVERY_POLL_MS: '50',
      },
    });
    seed = await seedTenant(t);
    backend = (
      await t.http
        .post('/api/machine/register-backend')
        .set(bearer(seed.backendUser.token))
        .send({ name: 'receiver', callbackUrl: receiver.url() })
        .expect(201)
    ).body;
  });
  afterAll(async () => {
    await t.close();
    await receiver.close();
  });

  async function enqueue(body: string) {
    const orm = t.app.get(MikroORM);
    return orm.em.fork().transactional((em) =>
      t.app.get(DeliveryService).enqueue(em, {
        tenantId: seed.tenant.id,
        target: { backendId: backend.id },
        body,
        origin: { type: 'trigger_run', id: crypto.randomUUID() },
      }),
    );
  }

  it('delivers a signed webhook that a Standard Webhooks receiver verifies', async () => {
    const body = JSON.stringify({ hello: 'world' });
    const enqueued = await enqueue(body);
    await receiver.waitFor(1);
    const request = receiver.requests[0];
    expect(request.body).toBe(body);
    expect(request.headers['webhook-id']).toBe(enqueued.webhookId);
    const verified = new Webhook(backend.signingSecret).verify(request.body, {
      'webhook-id': request.headers['webhook-id'] as string,
      'webhook-timestamp': request.headers['webhook-timestamp'] as string,
      'webhook-signature': request.headers['webhook-signature'] as string,
    });
    expect(verified).toEqual({ hello: 'world' });
    const delivery = await eventually(async () => {
      const response = await t.http.get(`/api/deliveries/${enqueued.id}`).set(bearer(seed.backendUser.token));
      return response.body.status === 'SUCCEEDED' && response.body;
    });
    expect(delivery.attempts).toBe(1);
    expect(delivery.attemptLog).toHaveLength(1);
    expect(delivery.attemptLog[0].statusCode).toBe(200);
  });

  it('retries with the same webhook-id and dies after the schedule', async () => {
    receiver.requests.length = 0;
    receiver.respond = () => ({ status: 500, body: 'nope' });
    const enqueued = await enqueue('{"retry":true}');
    await receiver.waitFor(3);
    const delivery = await eventually(async () => {
      const response = await t.http.get(`/api/deliveries/${enqueued.id}`).set(bearer(seed.backendUser.token));
      return response.body.status === 'DEAD' && response.body;
    });
    expect(delivery.attempts).toBe(3);
    expect(new Set(receiver.requests.map((r) => r.headers['webhook-id']))).toEqual(new Set([enqueued.webhookId]));
  });
});
