import { createHmac } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { startTestApp, type TestApp } from './support/app.js';
import { bearer, seedTenant, type SeededTenant } from './support/fixtures.js';
import { TestReceiver } from './support/receiver.js';

describe('cron triggers fire with the seed payload', () => {
  let t: TestApp;
  let receiver: TestReceiver;
  let seed: SeededTenant;
  let secret: string;

  beforeAll(async () => {
    receiver = await TestReceiver.start();
    t = await startTestApp({
      env: { ALLOW_HTTP_CALLBACKS: 'true', CALLBACK_ALLOWED_HOSTS: '127.0.0.1', DELIVERY_POLL_MS: '50' },
    });
    seed = await seedTenant(t);
    secret = (
      await t.http
        .post('/api/machine/register-backend')
        .set(bearer(seed.backendUser.token))
        .send({ name: 'cron-receiver', callbackUrl: receiver.url(), runKeys: ['every-second'] })
        .expect(201)
    ).body.signingSecret;
  });
  afterAll(async () => {
    await t.close();
    await receiver.close();
  });

  it('an every-second trigger delivers consecutive slots with exactly the seed fields, signed', async () => {
    const trigger = (
      await t.http
        .post(`/api/applications/${seed.application.id}/triggers`)
        .set(bearer(seed.operatorUser.token))
        .send({ name: 'Every second', cronExpression: '* * * * * *', runKey: 'every-second' })
        .expect(201)
    ).body;
    await receiver.waitFor(3, 10_000);
    await t.http.patch(`/api/triggers/${trigger.id}`).set(bearer(seed.operatorUser.token)).send({ enabled: false });

    const webhook = new Webhook(secret);
    const payloads = receiver.requests.map((request) =>
      webhook.verify(request.body, {
        'webhook-id': request.headers['webhook-id'] as string,
        'webhook-timestamp': request.headers['webhook-timestamp'] as string,
        'webhook-signature': request.headers['webhook-signature'] as string,
      }),
    ) as Record<string, unknown>[];
    const expectedPayload = {
      triggerId: trigger.id,
      triggerName: 'Every second',
      cronExpression: '* * * * * *',
      runKey: 'every-second',
      executionTime: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
      application: { id: seed.application.id, name: seed.application.name, slug: seed.application.slug },
      tenant: { id: seed.tenant.id, name: seed.tenant.name, slug: seed.tenant.slug },
      project: { id: seed.project.id, name: seed.project.name, slug: seed.project.slug },
    };
    for (const payload of payloads) {
      // The field set and order exactly (SPEC §5: "exactly these fields"), then every value.
      expect(Object.keys(payload)).toEqual(Object.keys(expectedPayload));
      expect(payload).toEqual(expectedPayload);
    }
    const seconds = payloads.map((payload) => Date.parse(payload.executionTime as string) / 1000).sort((x, y) => x - y);
    for (let i = 1; i < seconds.length; i++) expect(seconds[i] - seconds[i - 1]).toBe(1);
    // Compact JSON, as JSON.stringify writes it: the signed text is the payload re-serialised.
    for (const [index, request] of receiver.requests.entries())
      expect(request.body).toBe(JSON.stringify(payloads[index]));

    // The older hex scheme alongside Standard Webhooks: HMAC-SHA256 of the raw body, same key.
    const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
    for (const request of receiver.requests) {
      expect(request.headers['x-switchyard-signature']).toBe(
        createHmac('sha256', key).update(request.body).digest('hex'),
      );
      expect(request.headers['content-type']).toBe('application/json');
      expect(request.headers['user-agent']).toMatch(/^Switchyard\/\d+\.\d+\.\d+/);
      expect(request.headers['webhook-id']).toMatch(/^msg_/);
    }
    const webhookIds = receiver.requests.map((request) => request.headers['webhook-id']);
    expect(new Set(webhookIds).size).toBe(webhookIds.length);

    // Every receipt is one run of the trigger, and its executionTime is that run's scheduledFor.
    const runs = await t.http
      .get(`/api/triggers/${trigger.id}/runs?limit=200`)
      .set(bearer(seed.operatorUser.token))
      .expect(200);
    expect(runs.body.items.length).toBeGreaterThanOrEqual(3);
    const slots = runs.body.items.map((run: { scheduledFor: string }) => run.scheduledFor.replace('.000Z', 'Z'));
    for (const payload of payloads) expect(slots).toContain(payload.executionTime);
    for (const run of runs.body.items) {
      expect(run).toMatchObject({ triggerId: trigger.id, manual: false, executionId: null });
      expect(run.deliveries).toHaveLength(1);
    }
  });
});
