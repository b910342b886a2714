import { randomUUID } from 'node:crypto';
import { MikroORM } from '@mikro-orm/postgresql';
import { DeliveryService } from '../src/delivery/delivery.service.js';
import { startTestApp, type TestApp } from './support/app.js';
import { bearer, seedTenant, type SeededTenant, uniqueSlug } from './support/fixtures.js';
import { eventually } from './support/receiver.js';
import { SeedReceiver, type SeedRequest, type SeedResponse } from './support/seed-receiver.js';

/**
 * Failure handling that needs real time between attempts (SPEC §5): Retry-After and its clamp,
 * 410 Gone parking a backend, timeouts and leases. The schedule is 0,1s,1s so a delay can be
 * measured; one delivery per backend is in flight at a time, so a slow attempt holds the others
 * of its backend PENDING; the lease (1 s) is shorter than some attempts on purpose.
 */

interface Delivery {
  id: string;
  webhookId: string;
  status: string;
  attempts: number;
  nextAttemptAt: string | null;
  lastStatusCode: number | null;
  lastError: string | null;
  attemptLog: { at: string; statusCode: number | null; durationMs: number; error: string | null }[];
}

describe('delivery failures', () => {
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
        DELIVERY_RETRY_SCHEDULE: '0,1s,1s',
        DELIVERY_POLL_MS: '50',
        DELIVERY_TIMEOUT_MS: '300',
        DELIVERY_LEASE_MS: '1000',
        DELIVERY_PER_TARGET_CONCURRENCY: '1',
      },
    });
    seed = await seedTenant(t);
    token = seed.backendUser.token;
  });
  afterAll(async () => {
    await t.close();
    await receiver.close();
  });

  async function register(fields: Record<string, unknown> = {}): Promise<{ id: string; signingSecret: string }> {
    const response = await t.http
      .post('/api/machine/register-backend')
      .set(bearer(token))
      .send({ name: uniqueSlug('backend'), callbackUrl: receiver.url(), ...fields })
      .expect(201);
    receiver.trust(response.body.signingSecret);
    return response.body;
  }

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

  function settled(id: string, status: string): Promise<Delivery> {
    return eventually(async () => {
      const delivery = await getDelivery(id);
      return delivery.status === status && delivery;
    });
  }

  /**
   * The delay the engine chose after each of the first `failures` attempts. The attempt's log time and
   * nextAttemptAt come from the same transaction's now(), so their difference is the delay exactly.
   */
  async function chosenDelays(id: string, failures: number): Promise<number[]> {
    const delays: number[] = [];
    for (let made = 1; made <= failures; made++) {
      const waiting = await eventually(async () => {
        const delivery = await getDelivery(id);
        return delivery.status === 'PENDING' && delivery.attemptLog.length === made && delivery;
      });
      delays.push(Date.parse(waiting.nextAttemptAt!) - Date.parse(waiting.attemptLog[made - 1].at));
    }
    return delays;
  }

  /**
   * Answers the attempts of a delivery whose body is `{"case": name}` with the answers scripted for that name, in
   * order, then with success. Keyed by body because the script must be in place before the first attempt.
   */
  function script(answers: Record<string, ((res: SeedResponse) => void)[]>) {
    return (req: SeedRequest, res: SeedResponse) => {
      const attempt = receiver.requestsFor(String(req.headers['webhook-id'])).length - 1;
      const answer = answers[(req.body as { case?: string }).case ?? '']?.[attempt];
      if (answer) answer(res);
      else res.json({ status: 'success' });
    };
  }
  const busy = (status: 429 | 503 | 500, retryAfter: string) => (res: SeedResponse) =>
    res.status(status).set('retry-after', retryAfter).json({ status: 'error', message: 'slow down' });

  it('takes Retry-After of a 429 or 503 as the next delay, clamped to [scheduled, 2× scheduled], without jitter', async () => {
    const backend = await register();
    const inAnHour = new Date(Date.now() + 3_600_000).toUTCString();
    receiver.handler = script({
      // 2 s is within [1 s, 2 s]; 10 s is clamped down to twice the scheduled 1 s.
      asked: [busy(429, '2'), busy(503, '10')],
      // 0 is raised to the scheduled 1 s; an HTTP date an hour ahead is clamped to 2 s.
      raised: [busy(429, '0'), busy(503, inAnHour)],
      // Only 429 and 503 carry a Retry-After that counts: a 500's is ignored and the jittered schedule applies.
      ignored: [busy(500, '2')],
    });
    const [asked, raised, ignored] = [
      await enqueue(backend.id, '{"case":"asked"}'),
      await enqueue(backend.id, '{"case":"raised"}'),
      await enqueue(backend.id, '{"case":"ignored"}'),
    ];

    const [askedDelays, raisedDelays, ignoredDelays] = await Promise.all([
      chosenDelays(asked.id, 2),
      chosenDelays(raised.id, 2),
      chosenDelays(ignored.id, 1),
    ]);
    // Exact values: jitter (±20 %) would almost never land on them.
    expect(askedDelays).toEqual([2_000, 2_000]);
    expect(raisedDelays).toEqual([1_000, 2_000]);
    expect(ignoredDelays[0]).toBeGreaterThanOrEqual(800);
    expect(ignoredDelays[0]).toBeLessThanOrEqual(1_200);

    for (const enqueued of [asked, raised, ignored]) await settled(enqueued.id, 'SUCCEEDED');
    const requests = receiver.requestsFor(asked.webhookId);
    expect(requests).toHaveLength(3);
    expect(requests[1].at - requests[0].at).toBeGreaterThanOrEqual(1_990);
    expect(requests[2].at - requests[1].at).toBeGreaterThanOrEqual(1_990);
    // Same webhook-id on every retry, each signed with its own, later timestamp.
    const timestamps = requests.map((request) => Number(request.headers['webhook-timestamp']));
    expect(timestamps[1]).toBeGreaterThan(timestamps[0]);
    expect(timestamps[2]).toBeGreaterThan(timestamps[1]);
    expect(requests.every((request) => request.verifiedBy.standardWebhooks === backend.signingSecret)).toBe(true);
  });

  it('410 Gone disables the backend and parks this and its pending deliveries until it is enabled', async () => {
    // Its own long timeout, so the held first answer below is not cut off by DELIVERY_TIMEOUT_MS.
    const backend = await register({ timeoutMs: 10_000 });
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    // The first attempt of the first delivery is held until the others are queued, then answered 410.
    receiver.handler = async (req, res) => {
      const attempts = receiver.requestsFor(String(req.headers['webhook-id'])).length;
      if ((req.body as { case?: string }).case !== 'gone' || attempts > 1) {
        return res.json({ status: 'success' });
      }
      await released;
      res.status(410).json({ status: 'error', message: 'this backend is gone' });
    };

    const gone = await enqueue(backend.id, '{"case":"gone"}');
    await eventually(async () => receiver.requestsFor(gone.webhookId).length === 1);
    // The first is in flight, so these wait: one delivery per backend at a time.
    const waiting = [await enqueue(backend.id), await enqueue(backend.id)];
    expect((await getDelivery(gone.id)).status).toBe('SENDING');
    expect((await getDelivery(waiting[0].id)).status).toBe('PENDING');

    // Neither an attempt under way nor one waiting for its turn can be replayed.
    for (const id of [gone.id, waiting[0].id]) {
      const conflict = await t.http.post(`/api/deliveries/${id}/replay`).set(bearer(token));
      expect(conflict.status).toBe(409);
      expect(conflict.body).toEqual({ statusCode: 409, code: 'CONFLICT', message: expect.any(String) });
    }

    release();
    expect(await settled(gone.id, 'PARKED')).toMatchObject({ attempts: 1, lastStatusCode: 410, nextAttemptAt: null });
    for (const { id } of waiting) {
      expect(await getDelivery(id)).toMatchObject({
        status: 'PARKED',
        attempts: 0,
        nextAttemptAt: null,
        lastError: expect.stringContaining('410'),
      });
    }
    const backendPath = `/api/machine/backends/${backend.id}`;
    expect((await t.http.get(backendPath).set(bearer(token)).expect(200)).body.enabled).toBe(false);
    const later = await enqueue(backend.id);
    expect(later.status).toBe('PARKED');
    for (const { webhookId } of [...waiting, later]) expect(receiver.requestsFor(webhookId)).toEqual([]);

    await t.http.patch(backendPath).set(bearer(token)).send({ enabled: true }).expect(200);
    const resent = await settled(gone.id, 'SUCCEEDED');
    expect(resent.attempts).toBe(2);
    expect(resent.attemptLog.map((attempt) => attempt.statusCode)).toEqual([410, 200]);
    for (const { id, webhookId } of [...waiting, later]) {
      expect(await settled(id, 'SUCCEEDED')).toMatchObject({ attempts: 1 });
      expect(receiver.requestsFor(webhookId)).toHaveLength(1);
    }
    expect(receiver.requestsFor(gone.webhookId)).toHaveLength(2);
  });

  it('times out a receiver that never answers after DELIVERY_TIMEOUT_MS, on every attempt', async () => {
    const backend = await register();
    receiver.handler = () => undefined;
    const enqueued = await enqueue(backend.id);

    const dead = await settled(enqueued.id, 'DEAD');
    expect(dead).toMatchObject({ attempts: 3, lastStatusCode: null, lastError: 'timeout after 300 ms' });
    for (const attempt of dead.attemptLog) {
      expect(attempt).toMatchObject({ statusCode: null, error: 'timeout after 300 ms' });
      expect(attempt.durationMs).toBeGreaterThanOrEqual(290);
      expect(attempt.durationMs).toBeLessThan(1_000);
    }
  });

  it('stretches the lease for a backend timeout longer than it: one slow attempt is sent once', async () => {
    // Lease 1 s, backend timeout 3 s, answer after 1.5 s: without the longer lease a poll would reclaim the
    // row mid-attempt and send it a second time.
    const backend = await register({ timeoutMs: 3_000 });
    receiver.handler = async (_req, res) => {
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      res.json({ status: 'success' });
    };
    const enqueued = await enqueue(backend.id);

    const delivered = await settled(enqueued.id, 'SUCCEEDED');
    expect(delivered.attempts).toBe(1);
    expect(delivered.attemptLog).toEqual([expect.objectContaining({ statusCode: 200, error: null })]);
    expect(receiver.requestsFor(enqueued.webhookId)).toHaveLength(1);
  });
});
