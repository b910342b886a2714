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
    for (const payload of payloads) {
      expect(Object.keys(payload)).toEqual([
        'triggerId',
        'triggerName',
        'cronExpression',
        'runKey',
        'executionTime',
        'application',
        'tenant',
        'project',
      ]);
      expect(payload).toMatchObject({
        triggerId: trigger.id,
        triggerName: 'Every second',
        cronExpression: '* * * * * *',
        runKey: 'every-second',
        application: { id: seed.application.id, name: seed.application.name, slug: seed.application.slug },
        tenant: { id: seed.tenant.id, name: seed.tenant.name, slug: seed.tenant.slug },
        project: { id: seed.project.id, name: seed.project.name, slug: seed.project.slug },
      });
      expect(payload.executionTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    }
    const seconds = payloads.map((payload) => Date.parse(payload.executionTime as string) / 1000).sort();
    for (let i = 1; i < seconds.length; i++) expect(seconds[i] - seconds[i - 1]).toBe(1);
    expect(receiver.requests[0].body).toBe(JSON.stringify(payloads[0]));

    const runs = await t.http.get(`/api/triggers/${trigger.id}/runs`).set(bearer(seed.operatorUser.token)).expect(200);
    expect(runs.body.items.length).toBeGreaterThanOrEqual(3);
    expect(runs.body.items[0].deliveries).toHaveLength(1);
  });
});
