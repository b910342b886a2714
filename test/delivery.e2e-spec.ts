import { randomUUID } from 'node:crypto';
import { MikroORM } from '@mikro-orm/postgresql';
import { Webhook } from 'standardwebhooks';
import { DeliveryService } from '../src/delivery/delivery.service.js';
import { startTestApp, type TestApp } from './support/app.js';
import { freePort } from './support/built-app.js';
import { bearer, seedTenant, type SeededTenant, uniqueSlug } from './support/fixtures.js';
import { eventually } from './support/receiver.js';
import { hexSignature, hexSignatures, SeedReceiver, verifiesStandard } from './support/seed-receiver.js';

/**
 * The delivery engine end to end against a receiver written as the seed's examples are (SPEC §5):
 * signatures, outcomes of an attempt, retries, replay and metrics. Retries are fast here (schedule
 * 0,100ms,100ms: three attempts); Retry-After, 410 and timeouts live in delivery-failures.
 */

interface Backend {
  id: string;
  name: string;
  signingSecret: string;
  timeoutMs: number | null;
  enabled: boolean;
}

interface Delivery {
  id: string;
  webhookId: string;
  status: string;
  attempts: number;
  nextAttemptAt: string | null;
  lastStatusCode: number | null;
  lastError: string | null;
  attemptLog: {
    at: string;
    statusCode: number | null;
    durationMs: number;
    responseExcerpt: string | null;
    error: string | null;
  }[];
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe('delivery engine', () => {
  let t: TestApp;
  let receiver: SeedReceiver;
  let seed: SeededTenant;
  let token: string;

  beforeAll(async () => {
    receiver = await SeedReceiver.start();
    t = await startTestApp({
      env: {
        ALLOW_HTTP_CALLBACKS: 'true',
        CALLBACK_ALLOWED_HOSTS: '127.0.0.1',
        DELIVERY_RETRY_SCHEDULE: '0,100ms,100ms',
        DELIVERY_POLL_MS: '50',
      },
    });
    seed = await seedTenant(t);
    token = seed.backendUser.token;
  });
  afterAll(async () => {
    await t.close();
    await receiver.close();
  });
  beforeEach(() => {
    receiver.handler = (_req, res) => res.json({ status: 'success', processedAt: new Date().toISOString() });
  });

  /** Registers a backend pointing at the receiver, which is then configured with its secret. */
  async function register(fields: Record<string, unknown> = {}): Promise<Backend> {
    const response = await t.http
      .post('/api/machine/register-backend')
      .set(bearer(token))
      .send({ name: uniqueSlug('backend'), callbackUrl: receiver.url(), ...fields })
      .expect(201);
    receiver.trust(response.body.signingSecret);
    return response.body;
  }

  /** The way firings and flow steps enqueue: DeliveryService.enqueue inside the caller's transaction. */
  async function enqueue(backendId: string, body = JSON.stringify({ n: randomUUID() })) {
    return t.app
      .get(MikroORM)
      .em.fork()
      .transactional((em) =>
        t.app.get(DeliveryService).enqueue(em, {
          tenantId: seed.tenant.id,
          target: { backendId },
          body,
          origin: { type: 'trigger_run', id: randomUUID() },
        }),
      );
  }

  async function getDelivery(id: string): Promise<Delivery> {
    return (await t.http.get(`/api/deliveries/${id}`).set(bearer(token)).expect(200)).body;
  }

  /** Waits until the delivery reaches `status` (and, if given, has made `attempts` attempts). */
  function settled(id: string, status: string, attempts?: number): Promise<Delivery> {
    return eventually(async () => {
      const delivery = await getDelivery(id);
      return delivery.status === status && (attempts === undefined || delivery.attempts === attempts) && delivery;
    });
  }

  describe('signatures', () => {
    it('a seed-style receiver verifies the delivery with standardwebhooks and the hex header', async () => {
      const backend = await register();
      // The cron payload of SPEC §5, compact as JSON.stringify writes it.
      const body = JSON.stringify({
        triggerId: randomUUID(),
        triggerName: 'Hourly Payment Processing',
        cronExpression: '0 * * * *',
        runKey: 'hourly-payment',
        executionTime: '2025-12-01T10:00:00Z',
        application: { id: randomUUID(), name: 'Payment App', slug: 'payment-app' },
        tenant: { id: seed.tenant.id, name: seed.tenant.name, slug: seed.tenant.slug },
        project: { id: randomUUID(), name: 'E-commerce Platform', slug: 'ecommerce' },
      });
      const enqueued = await enqueue(backend.id, body);
      expect(enqueued).toEqual({
        id: expect.any(String),
        webhookId: expect.stringMatching(/^msg_/),
        status: 'PENDING',
      });

      const delivery = await settled(enqueued.id, 'SUCCEEDED');
      const [request] = receiver.requestsFor(enqueued.webhookId);
      expect(request.rawBody).toBe(body);
      // The seed's own check signs JSON.stringify(req.body); for a compact payload that is the raw body.
      expect(JSON.stringify(request.body)).toBe(body);
      expect(request.verifiedBy).toEqual({ standardWebhooks: backend.signingSecret, hex: backend.signingSecret });
      expect(request.headers).toMatchObject({
        'content-type': 'application/json',
        'user-agent': expect.stringMatching(/^Switchyard\/\d/),
        'webhook-id': enqueued.webhookId,
        'webhook-timestamp': expect.stringMatching(/^\d+$/),
        'webhook-signature': expect.stringMatching(/^v1,[A-Za-z0-9+/]+=*$/),
        'x-switchyard-signature': hexSignature(backend.signingSecret, body),
      });
      expect(Math.abs(Number(request.headers['webhook-timestamp']) - request.at / 1000)).toBeLessThan(2);

      expect(delivery).toMatchObject({
        webhookId: enqueued.webhookId,
        backendId: backend.id,
        url: receiver.url(),
        attempts: 1,
        nextAttemptAt: null,
        lastStatusCode: 200,
        lastError: null,
        origin: { type: 'trigger_run', id: expect.any(String) },
        createdAt: expect.stringMatching(ISO),
        finishedAt: expect.stringMatching(ISO),
      });
      expect(delivery.attemptLog).toEqual([
        {
          at: expect.stringMatching(ISO),
          statusCode: 200,
          durationMs: expect.any(Number),
          // The answer is stored as the receiver wrote it.
          responseExcerpt: expect.stringContaining('"status":"success"'),
          error: null,
        },
      ]);
    });

    it('after rotate-secret signs with both secrets, newest first, each verifying alone', async () => {
      const backend = await register();
      const rotated = await t.http
        .post(`/api/machine/backends/${backend.id}/rotate-secret`)
        .set(bearer(token))
        .expect(200);
      const [oldSecret, newSecret] = [backend.signingSecret, rotated.body.signingSecret as string];
      expect(newSecret).not.toBe(oldSecret);
      receiver.trust(newSecret);

      const enqueued = await enqueue(backend.id);
      await settled(enqueued.id, 'SUCCEEDED');
      const [request] = receiver.requestsFor(enqueued.webhookId);

      const entries = String(request.headers['webhook-signature']).split(' ');
      expect(entries).toHaveLength(2);
      const only = (entry: string) => ({ ...request.headers, 'webhook-signature': entry });
      // Newest first: the first entry is the new secret's, the second the old one's, and not the other way round.
      expect(verifiesStandard(newSecret, only(entries[0]), request.rawBody)).toBe(true);
      expect(verifiesStandard(oldSecret, only(entries[1]), request.rawBody)).toBe(true);
      expect(verifiesStandard(oldSecret, only(entries[0]), request.rawBody)).toBe(false);
      expect(verifiesStandard(newSecret, only(entries[1]), request.rawBody)).toBe(false);
      // A receiver that knows only one of the two secrets verifies the whole header either way.
      expect(new Webhook(oldSecret).verify(request.rawBody, only(entries.join(' ')) as never)).toBeDefined();
      expect(verifiesStandard(newSecret, request.headers, request.rawBody)).toBe(true);
      expect(hexSignatures(request.headers)).toEqual([
        hexSignature(newSecret, request.rawBody),
        hexSignature(oldSecret, request.rawBody),
      ]);
    });

    it('after two rotations within 24 h carries three signatures per header, newest first', async () => {
      const backend = await register();
      const secrets = [backend.signingSecret];
      for (let i = 0; i < 2; i++) {
        const rotated = await t.http
          .post(`/api/machine/backends/${backend.id}/rotate-secret`)
          .set(bearer(token))
          .expect(200);
        secrets.unshift(rotated.body.signingSecret);
      }
      receiver.trust(...secrets);

      const enqueued = await enqueue(backend.id);
      await settled(enqueued.id, 'SUCCEEDED');
      const [request] = receiver.requestsFor(enqueued.webhookId);
      const entries = String(request.headers['webhook-signature']).split(' ');
      expect(entries).toHaveLength(3);
      secrets.forEach((secret, i) => {
        expect(verifiesStandard(secret, { ...request.headers, 'webhook-signature': entries[i] }, request.rawBody)).toBe(
          true,
        );
      });
      expect(hexSignatures(request.headers)).toEqual(secrets.map((secret) => hexSignature(secret, request.rawBody)));
    });
  });

  describe('outcome of an attempt', () => {
    it('retries a 500 with the same webhook-id and a fresh timestamp, then gives up DEAD', async () => {
      const backend = await register();
      receiver.handler = (_req, res) =>
        res.status(500).json({ status: 'error', message: 'Database connection failed' });
      const enqueued = await enqueue(backend.id);

      const delivery = await settled(enqueued.id, 'DEAD');
      expect(delivery).toMatchObject({ attempts: 3, nextAttemptAt: null, lastStatusCode: 500 });
      expect(delivery.attemptLog.map((attempt) => attempt.statusCode)).toEqual([500, 500, 500]);
      expect(delivery.attemptLog[0].responseExcerpt).toBe('{"status":"error","message":"Database connection failed"}');

      const requests = receiver.requestsFor(enqueued.webhookId);
      expect(requests).toHaveLength(3);
      for (const request of requests) {
        // Each attempt is signed afresh with its own time; a receiver's replay window stays meaningful.
        expect(Math.abs(Number(request.headers['webhook-timestamp']) - request.at / 1000)).toBeLessThan(2);
        expect(request.verifiedBy.standardWebhooks).toBe(backend.signingSecret);
        expect(request.body).toEqual(requests[0].body);
      }
    });

    it('counts 200 with {"status":"error"} as a failed attempt and keeps the answer', async () => {
      const backend = await register();
      receiver.handler = (_req, res) => res.json({ status: 'error', message: 'x', errorCode: 'DB_ERROR' });
      const enqueued = await enqueue(backend.id);

      const delivery = await settled(enqueued.id, 'DEAD');
      expect(delivery).toMatchObject({ attempts: 3, lastStatusCode: 200 });
      expect(delivery.lastError).toMatch(/status.*error/);
      for (const attempt of delivery.attemptLog) {
        expect(attempt).toMatchObject({
          statusCode: 200,
          responseExcerpt: '{"status":"error","message":"x","errorCode":"DB_ERROR"}',
          error: expect.stringMatching(/status.*error/),
        });
      }
    });

    it('counts 204 without a body and a 2xx that is not JSON as success', async () => {
      const backend = await register();
      receiver.handler = (req, res) =>
        (req.body as { n: string }).n === 'empty' ? res.status(204).send() : res.status(202).send('accepted');
      const empty = await enqueue(backend.id, '{"n":"empty"}');
      const text = await enqueue(backend.id, '{"n":"text"}');

      expect((await settled(empty.id, 'SUCCEEDED')).attemptLog).toEqual([
        expect.objectContaining({ statusCode: 204, responseExcerpt: null, error: null }),
      ]);
      expect((await settled(text.id, 'SUCCEEDED')).attemptLog).toEqual([
        expect.objectContaining({ statusCode: 202, responseExcerpt: 'accepted', error: null }),
      ]);
    });

    it('does not follow a redirect: a 3xx is a failed attempt and its Location is never called', async () => {
      const backend = await register();
      receiver.handler = (_req, res) => res.status(302).set('location', receiver.url('/elsewhere')).send();
      const enqueued = await enqueue(backend.id);

      const delivery = await settled(enqueued.id, 'DEAD');
      expect(delivery.attemptLog.map((attempt) => [attempt.statusCode, attempt.error])).toEqual(
        Array(3).fill([302, 'redirect not followed']),
      );
      expect(receiver.requests.filter((request) => request.path === '/elsewhere')).toEqual([]);
    });

    it('records a refused connection as such and dies after the schedule', async () => {
      const closedPort = await freePort();
      const backend = await register({ callbackUrl: `http://127.0.0.1:${closedPort}/hook` });
      const enqueued = await enqueue(backend.id);

      const delivery = await settled(enqueued.id, 'DEAD');
      expect(delivery).toMatchObject({ attempts: 3, lastStatusCode: null, lastError: 'connection refused' });
      expect(delivery.attemptLog.map((attempt) => [attempt.statusCode, attempt.error])).toEqual(
        Array(3).fill([null, 'connection refused']),
      );
    });
  });

  describe('per-backend timeout', () => {
    it('registers, shows, changes and clears timeoutMs, and refuses values out of range', async () => {
      const backend = await register({ timeoutMs: 300 });
      expect(backend.timeoutMs).toBe(300);
      const path = `/api/machine/backends/${backend.id}`;
      expect((await t.http.get(path).set(bearer(token)).expect(200)).body.timeoutMs).toBe(300);
      expect(
        (await t.http.patch(path).set(bearer(token)).send({ timeoutMs: 300_000 }).expect(200)).body.timeoutMs,
      ).toBe(300_000);
      expect((await t.http.patch(path).set(bearer(token)).send({ timeoutMs: null }).expect(200)).body.timeoutMs).toBe(
        null,
      );
      for (const timeoutMs of [99, 300_001, 1.5, '1000']) {
        const response = await t.http.patch(path).set(bearer(token)).send({ timeoutMs });
        expect(response.status).toBe(400);
        expect(response.body.code).toBe('VALIDATION_FAILED');
        expect(response.body.errors.map((error: { field: string }) => error.field)).toContain('timeoutMs');
      }
      const refused = await t.http
        .post('/api/machine/register-backend')
        .set(bearer(token))
        .send({ name: uniqueSlug('backend'), callbackUrl: receiver.url(), timeoutMs: 50 });
      expect(refused.status).toBe(400);
      expect(refused.body.errors).toEqual([{ field: 'timeoutMs', message: expect.any(String) }]);
    });

    it('a backend with timeoutMs 300 times out a receiver answering after 1 s, while the default (10 s) waits', async () => {
      const impatient = await register({ timeoutMs: 300 });
      const patient = await register();
      receiver.handler = async (_req, res) => {
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        res.json({ status: 'success' });
      };
      const [short, long] = [await enqueue(impatient.id), await enqueue(patient.id)];

      const timedOut = await settled(short.id, 'DEAD');
      for (const attempt of timedOut.attemptLog) {
        expect(attempt).toMatchObject({ statusCode: null, error: 'timeout after 300 ms' });
        expect(attempt.durationMs).toBeLessThan(1_000);
      }
      const waited = await settled(long.id, 'SUCCEEDED');
      expect(waited.attemptLog).toEqual([expect.objectContaining({ statusCode: 200, error: null })]);
      expect(waited.attemptLog[0].durationMs).toBeGreaterThanOrEqual(1_000);
    });
  });

  describe('replay and parking', () => {
    it('replays a DEAD delivery with the same webhook-id and a fresh budget, appending to its log', async () => {
      const backend = await register();
      receiver.handler = (_req, res) => res.status(503).json({ status: 'error', message: 'maintenance' });
      const enqueued = await enqueue(backend.id);
      await settled(enqueued.id, 'DEAD', 3);

      // Still failing: the replay gets a whole new budget of three attempts, and attempts keep counting.
      const replayed = await t.http.post(`/api/deliveries/${enqueued.id}/replay`).set(bearer(token)).expect(202);
      expect(replayed.body).toMatchObject({
        id: enqueued.id,
        webhookId: enqueued.webhookId,
        status: 'PENDING',
        attempts: 3,
        nextAttemptAt: expect.stringMatching(ISO),
        finishedAt: null,
      });
      const deadAgain = await settled(enqueued.id, 'DEAD', 6);
      expect(deadAgain.attemptLog.map((attempt) => attempt.statusCode)).toEqual(Array(6).fill(503));

      // Now the receiver is back: one more attempt succeeds.
      receiver.handler = (_req, res) => res.json({ status: 'success' });
      await t.http.post(`/api/deliveries/${enqueued.id}/replay`).set(bearer(token)).expect(202);
      const succeeded = await settled(enqueued.id, 'SUCCEEDED', 7);
      expect(succeeded.attemptLog.map((attempt) => attempt.statusCode)).toEqual([...Array(6).fill(503), 200]);

      // A SUCCEEDED delivery replays too (the receiver lost it, say).
      await t.http.post(`/api/deliveries/${enqueued.id}/replay`).set(bearer(token)).expect(202);
      await settled(enqueued.id, 'SUCCEEDED', 8);

      const requests = receiver.requestsFor(enqueued.webhookId);
      expect(requests).toHaveLength(8);
      expect(requests.every((request) => request.verifiedBy.standardWebhooks === backend.signingSecret)).toBe(true);
    });

    it('parks a delivery to a disabled backend at once and sends it when the backend is enabled', async () => {
      const backend = await register();
      const path = `/api/machine/backends/${backend.id}`;
      await t.http.patch(path).set(bearer(token)).send({ enabled: false }).expect(200);

      const enqueued = await enqueue(backend.id);
      expect(enqueued.status).toBe('PARKED');
      expect(await getDelivery(enqueued.id)).toMatchObject({ status: 'PARKED', attempts: 0, nextAttemptAt: null });

      await t.http.patch(path).set(bearer(token)).send({ enabled: true }).expect(200);
      const delivered = await settled(enqueued.id, 'SUCCEEDED');
      expect(delivered.attempts).toBe(1);
      expect(receiver.requestsFor(enqueued.webhookId)).toHaveLength(1);
    });

    it('a delivery claimed after its backend was disabled parks without counting an attempt', async () => {
      // Disabled between enqueue and claim: the worker finds the backend off and parks instead of sending.
      const backend = await register();
      const path = `/api/machine/backends/${backend.id}`;
      const enqueued = await t.app
        .get(MikroORM)
        .em.fork()
        .transactional(async (em) => {
          const delivery = await t.app.get(DeliveryService).enqueue(em, {
            tenantId: seed.tenant.id,
            target: { backendId: backend.id },
            body: '{}',
            origin: { type: 'trigger_run', id: randomUUID() },
          });
          await em.execute('update backends set enabled = false where id = ?', [backend.id]);
          return delivery;
        });
      expect(enqueued.status).toBe('PENDING');

      const parked = await settled(enqueued.id, 'PARKED');
      expect(parked).toMatchObject({ attempts: 0, attemptLog: [], lastError: 'the backend is disabled' });
      expect(receiver.requestsFor(enqueued.webhookId)).toEqual([]);

      await t.http.patch(path).set(bearer(token)).send({ enabled: true }).expect(200);
      expect(await settled(enqueued.id, 'SUCCEEDED')).toMatchObject({ attempts: 1 });
    });

    it('replays a PARKED delivery while its backend is still disabled: 202, and it parks again unsent', async () => {
      const backend = await register();
      const path = `/api/machine/backends/${backend.id}`;
      await t.http.patch(path).set(bearer(token)).send({ enabled: false }).expect(200);
      const enqueued = await enqueue(backend.id);
      expect(enqueued.status).toBe('PARKED');

      const replayed = await t.http.post(`/api/deliveries/${enqueued.id}/replay`).set(bearer(token)).expect(202);
      expect(replayed.body).toMatchObject({ status: 'PENDING', attempts: 0 });
      // The worker claims it, finds the backend still off, and parks it again without an attempt.
      expect(await settled(enqueued.id, 'PARKED')).toMatchObject({ attempts: 0, attemptLog: [] });
      expect(receiver.requestsFor(enqueued.webhookId)).toEqual([]);

      await t.http.patch(path).set(bearer(token)).send({ enabled: true }).expect(200);
      expect(await settled(enqueued.id, 'SUCCEEDED')).toMatchObject({ attempts: 1 });
    });
  });

  it('counts enqueued deliveries, attempts by result and finished deliveries by status in /metrics', async () => {
    const scrape = async () => {
      const text = (await t.http.get('/metrics').expect(200)).text;
      return (series: string) => Number(new RegExp(`^${escape(series)} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
    };
    const before = await scrape();
    const backend = await register();
    receiver.handler = (req, res) =>
      (req.body as { fail?: boolean }).fail
        ? res.status(500).json({ status: 'error' })
        : res.json({ status: 'success' });
    const [good, bad] = [await enqueue(backend.id, '{"fail":false}'), await enqueue(backend.id, '{"fail":true}')];
    await settled(good.id, 'SUCCEEDED');
    await settled(bad.id, 'DEAD');

    // Attempts are counted just after their transaction commits: wait for the last one to show.
    const failures = 'switchyard_delivery_attempts_total{result="failure"}';
    const after = await eventually(async () => {
      const now = await scrape();
      return now(failures) - before(failures) >= 3 && now;
    });
    const grew = (series: string) => after(series) - before(series);
    expect(grew('switchyard_deliveries_enqueued_total')).toBe(2);
    expect(grew('switchyard_delivery_attempts_total{result="success"}')).toBe(1);
    expect(grew('switchyard_delivery_attempts_total{result="failure"}')).toBe(3);
    expect(grew('switchyard_deliveries_finished_total{status="SUCCEEDED"}')).toBe(1);
    expect(grew('switchyard_deliveries_finished_total{status="DEAD"}')).toBe(1);
    expect(after('switchyard_delivery_attempt_duration_seconds_count')).toBeGreaterThanOrEqual(4);
  });
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
