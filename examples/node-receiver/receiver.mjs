// A Switchyard webhook receiver written the way the backend-registration guide recommends:
// verify every call's signature, deduplicate by webhook-id, answer fast, do the work later.
//
//   WEBHOOK_SECRET=whsec_... PORT=4000 node examples/node-receiver/receiver.mjs
//
// Dependencies: fastify and standardwebhooks (npm install fastify standardwebhooks).
import { createHmac, timingSafeEqual } from 'node:crypto';
import Fastify from 'fastify';
import { Webhook } from 'standardwebhooks';

const secret = process.env.WEBHOOK_SECRET;
if (!secret?.startsWith('whsec_')) {
  console.error('Set WEBHOOK_SECRET to the signingSecret that register-backend returned (whsec_...)');
  process.exit(1);
}
const port = Number(process.env.PORT ?? 4000);
const hexHeader = process.env.SIGNATURE_HEADER ?? 'x-switchyard-signature';
const webhook = new Webhook(secret);
const key = Buffer.from(secret.slice('whsec_'.length), 'base64');

// Replace with a table with a unique key (or Redis SET NX) in production: retries and replays
// deliver the same webhook-id again, and a restart must not forget which ones were handled.
const seen = new Map();
const queue = [];

const app = Fastify({ logger: false });

// Signatures cover the exact bytes sent, so keep the raw body instead of re-serializing JSON.
app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => done(null, body));

app.post('/triggers/callback', async (request, reply) => {
  const raw = request.body;
  let payload;
  try {
    // Checks webhook-id, webhook-timestamp (±5 min) and any one of the v1 signatures.
    payload = webhook.verify(raw, request.headers);
  } catch {
    return reply.code(401).send({ status: 'error', message: 'Invalid signature' });
  }
  if (!hexSignatureMatches(raw, request.headers[hexHeader])) {
    return reply.code(401).send({ status: 'error', message: 'Invalid body signature' });
  }

  const id = request.headers['webhook-id'];
  if (seen.has(id)) {
    return { status: 'success', message: 'Already processed', processedAt: seen.get(id), results: { duplicate: true } };
  }
  const processedAt = new Date().toISOString();
  seen.set(id, processedAt);
  queue.push({ id, payload });
  setImmediate(drain);
  return { status: 'success', message: 'Queued for processing', processedAt, results: { queued: queue.length } };
});

app.get('/health', async () => ({ status: 'ok', processed: seen.size }));

/** Any of the space-separated hex signatures (one per valid secret during a rotation) may match. */
function hexSignatureMatches(raw, header) {
  if (typeof header !== 'string') return false;
  const expected = Buffer.from(createHmac('sha256', key).update(raw).digest('hex'));
  return header.split(' ').some((candidate) => {
    const given = Buffer.from(candidate);
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}

async function drain() {
  while (queue.length > 0) {
    const { id, payload } = queue.shift();
    // The heavy work goes here; this example only logs what arrived.
    console.log(
      JSON.stringify({
        event: 'processed',
        webhookId: id,
        triggerName: payload.triggerName,
        executionTime: payload.executionTime,
        tenant: payload.tenant?.slug,
      }),
    );
  }
}

await app.listen({ port, host: process.env.HOST ?? '127.0.0.1' });
console.log(JSON.stringify({ event: 'listening', port }));
