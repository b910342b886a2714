import { startTestApp, type TestApp } from './support/app.js';
import { bearer, seedTenant, type SeededTenant } from './support/fixtures.js';
import { eventually, TestReceiver } from './support/receiver.js';

describe('flows: start, webhook, pause, resume', () => {
  let t: TestApp;
  let receiver: TestReceiver;
  let seed: SeededTenant;
  let backendId: string;

  beforeAll(async () => {
    receiver = await TestReceiver.start();
    t = await startTestApp({
      env: {
        ALLOW_HTTP_CALLBACKS: 'true',
        CALLBACK_ALLOWED_HOSTS: '127.0.0.1',
        DELIVERY_POLL_MS: '50',
        SCHEDULER_TICK_MS: '50',
      },
    });
    seed = await seedTenant(t);
    backendId = (
      await t.http
        .post('/api/machine/register-backend')
        .set(bearer(seed.backendUser.token))
        .send({ name: 'orders', callbackUrl: receiver.url() })
        .expect(201)
    ).body.id;
  });
  afterAll(async () => {
    await t.close();
    await receiver.close();
  });

  it('runs an order flow end to end', async () => {
    const operator = bearer(seed.operatorUser.token);
    const flow = (
      await t.http
        .post(`/api/applications/${seed.application.id}/flows`)
        .set(operator)
        .send({
          name: 'Orders',
          steps: [
            { type: 'callback', name: 'Order received' },
            {
              type: 'webhook',
              name: 'Reserve stock',
              backendId,
              invocationMethod: {
                headers: { 'x-run-id': '{{ .run.id }}' },
                body: {
                  order: '{{ .steps["Order received"].data }}',
                  count: '{{ .steps["Order received"].data.items | length }}',
                  confirm: '{{ .callbacks["Payment confirmed"] }}',
                },
              },
            },
            {
              type: 'callback',
              name: 'Payment confirmed',
              condition: { type: 'JQ', expressions: ['.data.status == "paid"'] },
            },
            { type: 'delay', name: 'Settle', duration: 'PT0S' },
          ],
        })
        .expect(201)
    ).body;
    const start = flow.steps[0];
    expect(start.activationUrl).toMatch(
      new RegExp(`/api/automation/flow/${flow.id}/trigger/${start.triggerId}/activate$`),
    );

    const started = await t.http
      .post(`/api/automation/flow/${flow.id}/trigger/${start.triggerId}/activate`)
      .send({ items: [1, 2, 3] })
      .expect(200);
    const executionId = started.headers['x-execution-id'];
    expect(started.headers['x-activation']).toBe('activated');

    await receiver.waitFor(1);
    const delivered = JSON.parse(receiver.requests[0].body);
    expect(delivered.order).toEqual({ items: [1, 2, 3] });
    expect(delivered.count).toBe(3);
    expect(delivered.confirm).toContain(`?execution=${executionId}`);
    expect(receiver.requests[0].headers['x-run-id']).toBe(executionId);

    const waiting = await eventually(async () => {
      const response = await t.http.get(`/api/executions/${executionId}`).set(operator);
      return response.body.status === 'waiting' && response.body;
    });
    expect(waiting.currentStep).toBe('Payment confirmed');
    expect(waiting.context.steps['Reserve stock'].response.status).toBe(200);

    const mid = flow.steps[2];
    const activate = `/api/automation/flow/${flow.id}/trigger/${mid.triggerId}/activate`;
    const ignoredCall = await t.http
      .post(`${activate}?execution=${executionId}`)
      .send({ status: 'pending' })
      .expect(200);
    expect(ignoredCall.headers['x-activation']).toBe('ignored');
    await t.http.post(`${activate}?execution=${executionId}`).send({ status: 'paid' }).expect(200);

    const done = await eventually(async () => {
      const response = await t.http.get(`/api/executions/${executionId}`).set(operator);
      return response.body.status === 'completed' && response.body;
    });
    expect(done.context.steps['Payment confirmed'].data).toEqual({ status: 'paid' });
    expect(done.history.map((event: { type: string }) => event.type)).toEqual([
      'started',
      'activated',
      'webhook_enqueued',
      'step_completed',
      'wait_for_callback',
      'activation_ignored',
      'activate',
      'step_completed',
      'finish',
    ]);
  });
});
