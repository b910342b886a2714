import { performance } from 'node:perf_hooks';
import { USER_AGENT } from '../src/common/version.js';
import { WebhookSender } from '../src/delivery/webhook-sender.js';
import { newWebhookId, signWebhook } from '../src/delivery/webhook-signer.js';
import { benchBody } from './delivery-body.js';

/**
 * The raw loop the `delivery` scenario compares the service with: what the worker does per delivery
 * minus the database. Same signer, same WebhookSender (axios, keep-alive agents, address guard),
 * same headers and bodies, same concurrency; no claim, no lease, no result to record. One-shot: it
 * sends, prints one JSON line ({sent, failures, cpuMs}) on stdout and exits.
 *
 * RAW_MODE=burst: RAW_COUNT bodies, all stamped as enqueued at start, sent by RAW_CONCURRENCY loops.
 * RAW_MODE=idle: RAW_COUNT single sends, one at a time, RAW_PAUSE_MS apart (stamped just before).
 * RAW_WARMUP bodies go first (JIT, connection pool; the service gets the same), then a POST to
 * RAW_RESET_URL clears the receiver's figures, so only the measured messages count.
 */
const now = () => performance.timeOrigin + performance.now();
const env = (name: string): string => {
  const value = process.env[name];
  if (value === undefined) throw new Error(`raw-sender: ${name} is required`);
  return value;
};

const urls = env('RAW_URLS').split(',');
const secret = env('RAW_SECRET');
const count = Number(env('RAW_COUNT'));
const concurrency = Number(process.env.RAW_CONCURRENCY ?? 64);
const mode = process.env.RAW_MODE ?? 'burst';
const pauseMs = Number(process.env.RAW_PAUSE_MS ?? 100);
const hexHeaderName = process.env.SIGNATURE_HEADER ?? 'x-switchyard-signature';
const warmup = Number(process.env.RAW_WARMUP ?? 0);
const resetUrl = process.env.RAW_RESET_URL;
const timeoutMs = 10_000;

const sender = new WebhookSender({ allowHttp: true, allowedHosts: ['127.0.0.1'] });
let failures = 0;

async function send(index: number, body: string): Promise<void> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'user-agent': USER_AGENT,
    ...signWebhook({
      webhookId: newWebhookId(),
      timestampSeconds: Math.floor(Date.now() / 1000),
      body,
      secrets: [secret],
      hexHeaderName,
    }),
  };
  const result = await sender.send({ url: urls[index % urls.length], method: 'POST', headers, body, timeoutMs });
  if (!result.succeeded) failures++;
}

async function burst(total: number): Promise<void> {
  const enqueuedAt = now();
  const bodies = Array.from({ length: total }, (_, seq) => benchBody(seq, enqueuedAt));
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, total) }, async () => {
      while (next < total) {
        const index = next++;
        await send(index, bodies[index]);
      }
    }),
  );
}

if (warmup > 0) await burst(warmup);
if (resetUrl) {
  const response = await fetch(resetUrl, { method: 'POST' });
  if (!response.ok) throw new Error(`raw-sender: resetting the receiver answered ${response.status}`);
}
failures = 0;
const cpuBefore = process.cpuUsage();
if (mode === 'burst') {
  await burst(count);
} else {
  for (let seq = 0; seq < count; seq++) {
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
    await send(seq, benchBody(seq, now()));
  }
}
const cpu = process.cpuUsage(cpuBefore);
sender.close();
console.log(JSON.stringify({ sent: count, failures, cpuMs: (cpu.user + cpu.system) / 1000 }));
