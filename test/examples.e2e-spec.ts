import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { startTestApp, type TestApp } from './support/app.js';
import { freePort } from './support/built-app.js';
import { bearer, seedTenant, type SeededTenant } from './support/fixtures.js';
import { eventually } from './support/receiver.js';

const EXAMPLE = resolve(import.meta.dirname, '../examples/node-receiver');
const run = promisify(execFile);

describe('examples/node-receiver against the real service', () => {
  let t: TestApp;
  let seed: SeededTenant;
  let receiver: ChildProcess | null = null;
  let receiverOutput = '';

  beforeAll(async () => {
    t = await startTestApp({
      listen: true,
      env: {
        ALLOW_HTTP_CALLBACKS: 'true',
        CALLBACK_ALLOWED_HOSTS: '127.0.0.1',
        DELIVERY_POLL_MS: '50',
        SCHEDULER_TICK_MS: '100',
      },
    });
    seed = await seedTenant(t);
  });
  afterAll(async () => {
    receiver?.kill('SIGTERM');
    await t.close();
  });

  it('register → cron fires → the example verifies, dedupes and processes', async () => {
    const port = await freePort();
    const registered = await run(process.execPath, [join(EXAMPLE, 'register.mjs')], {
      env: {
        PATH: process.env.PATH,
        SWITCHYARD_URL: t.baseUrl!,
        SWITCHYARD_TOKEN: seed.backendUser.token,
        CALLBACK_URL: `http://127.0.0.1:${port}/triggers/callback`,
        RUN_KEYS: 'example-run',
      },
    });
    const backend = JSON.parse(registered.stdout);
    expect(backend.status).toBe(201);
    expect(backend.signingSecret).toMatch(/^whsec_/);

    receiver = spawn(process.execPath, [join(EXAMPLE, 'receiver.mjs')], {
      env: { PATH: process.env.PATH, PORT: String(port), WEBHOOK_SECRET: backend.signingSecret },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    receiver.stdout!.on('data', (chunk: Buffer) => (receiverOutput += chunk.toString()));
    receiver.stderr!.on('data', (chunk: Buffer) => (receiverOutput += chunk.toString()));
    await eventually(async () => receiverOutput.includes('"listening"'));

    const operator = bearer(seed.operatorUser.token);
    const trigger = (
      await t.http
        .post(`/api/applications/${seed.application.id}/triggers`)
        .set(operator)
        .send({ name: 'Example every second', cronExpression: '* * * * * *', runKey: 'example-run' })
        .expect(201)
    ).body;
    const processed = await eventually(async () => {
      const lines = receiverOutput
        .split('\n')
        .filter((line) => line.includes('"processed"'))
        .map((line) => JSON.parse(line) as { webhookId: string; triggerName: string; tenant: string });
      return lines.length >= 2 && lines;
    }, 20_000);
    await t.http.patch(`/api/triggers/${trigger.id}`).set(operator).send({ enabled: false }).expect(200);
    expect(processed[0]).toMatchObject({ triggerName: 'Example every second', tenant: seed.tenant.slug });

    // A replay reuses the webhook-id: the example answers it as a duplicate and does no work twice.
    const deliveries = await t.http.get(`/api/deliveries?backendId=${backend.id}`).set(operator).expect(200);
    const first = deliveries.body.items.find(
      (item: { webhookId: string }) => item.webhookId === processed[0].webhookId,
    );
    await eventually(async () => {
      const response = await t.http.get(`/api/deliveries/${first.id}`).set(operator);
      return response.body.status === 'SUCCEEDED';
    });
    await t.http.post(`/api/deliveries/${first.id}/replay`).set(operator).expect(202);
    const replayed = await eventually(async () => {
      const response = await t.http.get(`/api/deliveries/${first.id}`).set(operator);
      return response.body.status === 'SUCCEEDED' && response.body.attemptLog.length === 2 && response.body;
    });
    expect(JSON.parse(replayed.attemptLog[1].responseExcerpt)).toMatchObject({
      status: 'success',
      message: 'Already processed',
      results: { duplicate: true },
    });
    const processedIds = receiverOutput.split('\n').filter((line) => line.includes(processed[0].webhookId));
    expect(processedIds).toHaveLength(1);
  });
});
