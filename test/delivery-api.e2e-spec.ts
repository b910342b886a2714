import { randomUUID } from 'node:crypto';
import { MikroORM } from '@mikro-orm/postgresql';
import { DeliveryService } from '../src/delivery/delivery.service.js';
import type { OutboundMessage } from '../src/delivery/delivery.types.js';
import { startTestApp, type TestApp } from './support/app.js';
import {
  bearer,
  createMachineUser,
  seedTenant,
  type SeededMachineUser,
  type SeededTenant,
  uniqueSlug,
} from './support/fixtures.js';
import { eventually } from './support/receiver.js';
import { SeedReceiver } from './support/seed-receiver.js';

/**
 * The deliveries API (SPEC §5): list with filters and keyset pages, detail with the attempt log,
 * who sees what (a backend-only machine user: its own backends' deliveries; an operator: all of its
 * tenant's), and recover. Replay's rules are exercised in delivery and delivery-failures.
 */

interface DeliveryItem {
  id: string;
  webhookId: string;
  backendId: string | null;
  status: string;
  attempts: number;
  createdAt: string;
}

const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000';

describe('deliveries API', () => {
  let t: TestApp;
  let receiver: SeedReceiver;
  let seed: SeededTenant;
  let owner: SeededMachineUser;
  let other: SeededMachineUser;

  beforeAll(async () => {
    receiver = await SeedReceiver.start();
    // Bodies {"fail": true} are refused, everything else succeeds.
    receiver.handler = (req, res) =>
      (req.body as { fail?: boolean }).fail
        ? res.status(500).json({ status: 'error', message: 'refused' })
        : res.json({ status: 'success' });
    t = await startTestApp({
      env: {
        ALLOW_HTTP_CALLBACKS: 'true',
        CALLBACK_ALLOWED_HOSTS: '127.0.0.1',
        DELIVERY_RETRY_SCHEDULE: '0,100ms,100ms',
        DELIVERY_POLL_MS: '50',
      },
    });
    seed = await seedTenant(t);
    owner = seed.backendUser;
    other = await createMachineUser(t, seed.tenant.id, ['backend']);
    receiver.trust(seed.application.signingSecret);
  });
  afterAll(async () => {
    await t.close();
    await receiver.close();
  });

  const as = (user: SeededMachineUser) => ({
    get: (path: string) => t.http.get(path).set(bearer(user.token)),
    post: (path: string, body?: object) => t.http.post(path).set(bearer(user.token)).send(body),
  });

  async function register(user: SeededMachineUser): Promise<string> {
    const response = await t.http
      .post('/api/machine/register-backend')
      .set(bearer(user.token))
      .send({ name: uniqueSlug('backend'), callbackUrl: receiver.url() })
      .expect(201);
    receiver.trust(response.body.signingSecret);
    return response.body.id;
  }

  /** Enqueues each message's delivery in one transaction, as one firing fanning out would. */
  async function enqueue(...messages: { target: OutboundMessage['target']; body?: object }[]) {
    return t.app
      .get(MikroORM)
      .em.fork()
      .transactional(async (em) => {
        const created = [];
        for (const message of messages) {
          created.push(
            await t.app.get(DeliveryService).enqueue(em, {
              tenantId: seed.tenant.id,
              target: message.target,
              body: JSON.stringify(message.body ?? { n: randomUUID() }),
              origin: { type: 'trigger_run', id: randomUUID() },
            }),
          );
        }
        return created;
      });
  }

  function settled(id: string, status: string, attempts?: number): Promise<DeliveryItem> {
    return eventually(async () => {
      const { body } = await as(seed.operatorUser).get(`/api/deliveries/${id}`).expect(200);
      return body.status === status && (attempts === undefined || body.attempts === attempts) && body;
    });
  }

  /** Follows nextCursor to the end, checking every page's size; returns the items in the order served. */
  async function walk(user: SeededMachineUser, query: string, limit: number): Promise<DeliveryItem[]> {
    const seen: DeliveryItem[] = [];
    let cursor: string | null = null;
    do {
      const page: { body: { items: DeliveryItem[]; nextCursor: string | null } } = await as(user)
        .get(`/api/deliveries?${query}&limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`)
        .expect(200);
      expect(page.body.items.length).toBeLessThanOrEqual(limit);
      seen.push(...page.body.items);
      cursor = page.body.nextCursor;
    } while (cursor !== null);
    return seen;
  }

  const listIds = async (user: SeededMachineUser, query = '') =>
    (await as(user).get(`/api/deliveries?limit=200${query}`).expect(200)).body.items.map(
      (item: DeliveryItem) => item.id,
    ) as string[];

  function expectInvalid(response: { status: number; body: any }, field: string) {
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({ statusCode: 400, code: 'VALIDATION_FAILED' });
    expect(response.body.errors.map((error: { field: string }) => error.field)).toEqual([field]);
  }

  describe('GET /api/deliveries and /api/deliveries/:id', () => {
    it('shows a delivery with exactly the documented fields, and its attempt log in the detail', async () => {
      const backendId = await register(owner);
      const [enqueued] = await enqueue({ target: { backendId } });
      await settled(enqueued.id, 'SUCCEEDED');

      const list = await as(owner).get(`/api/deliveries?backendId=${backendId}`).expect(200);
      expect(list.body.nextCursor).toBeNull();
      expect(list.body.items).toEqual([
        {
          id: enqueued.id,
          webhookId: enqueued.webhookId,
          backendId,
          applicationId: null,
          url: receiver.url(),
          status: 'SUCCEEDED',
          attempts: 1,
          nextAttemptAt: null,
          lastStatusCode: 200,
          lastError: null,
          origin: { type: 'trigger_run', id: expect.any(String) },
          createdAt: expect.any(String),
          finishedAt: expect.any(String),
        },
      ]);
      const detail = await as(owner).get(`/api/deliveries/${enqueued.id}`).expect(200);
      expect(detail.body).toEqual({
        ...list.body.items[0],
        attemptLog: [
          {
            at: expect.any(String),
            statusCode: 200,
            durationMs: expect.any(Number),
            responseExcerpt: '{"status":"success"}',
            error: null,
          },
        ],
      });
    });

    it('pages through deliveries enqueued in one transaction, newest first, none lost or repeated', async () => {
      // One transaction: every row gets the same created_at, so the pages rest on the id tie-break.
      const backendId = await register(owner);
      const enqueued = await enqueue(...Array.from({ length: 7 }, () => ({ target: { backendId } })));

      const seen = await walk(owner, `backendId=${backendId}`, 2);
      expect(seen.map((item) => item.id).sort()).toEqual(enqueued.map((delivery) => delivery.id).sort());
      const newestFirst = [...seen].sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id));
      expect(seen).toEqual(newestFirst);

      const first = await as(owner).get(`/api/deliveries?backendId=${backendId}&limit=2&includeTotal=true`).expect(200);
      expect(first.body.total).toBe(7);
      expect(first.body.items).toHaveLength(2);
    });

    it('filters by backendId, status and since, alone and together', async () => {
      const backendId = await register(owner);
      const [dead] = await enqueue({ target: { backendId }, body: { fail: true } });
      await settled(dead.id, 'DEAD');
      const since = new Date(Date.parse((await settled(dead.id, 'DEAD')).createdAt) + 1).toISOString();
      const [succeeded, alsoDead] = await enqueue(
        { target: { backendId } },
        { target: { backendId }, body: { fail: true } },
      );
      await settled(succeeded.id, 'SUCCEEDED');
      await settled(alsoDead.id, 'DEAD');

      const ids = (query: string) => listIds(owner, `&backendId=${backendId}${query}`);
      expect((await ids('')).sort()).toEqual([dead.id, succeeded.id, alsoDead.id].sort());
      expect((await ids('&status=DEAD')).sort()).toEqual([dead.id, alsoDead.id].sort());
      expect(await ids('&status=SUCCEEDED')).toEqual([succeeded.id]);
      expect(await ids('&status=PARKED')).toEqual([]);
      expect((await ids(`&since=${since}`)).sort()).toEqual([succeeded.id, alsoDead.id].sort());
      expect(await ids(`&since=${since}&status=DEAD`)).toEqual([alsoDead.id]);
      const counted = await as(owner).get(`/api/deliveries?backendId=${backendId}&status=DEAD&includeTotal=true`);
      expect(counted.body.total).toBe(2);
    });

    it('refuses a bad query parameter with VALIDATION_FAILED naming it', async () => {
      const cases: [string, string][] = [
        ['status=BOGUS', 'status'],
        ['status=dead', 'status'],
        ['since=yesterday', 'since'],
        ['since=2025-13-01T00:00:00Z', 'since'],
        ['backendId=nope', 'backendId'],
        ['limit=0', 'limit'],
        ['limit=201', 'limit'],
        ['cursor=not-a-cursor', 'cursor'],
        ['sort=createdAt', 'sort'],
      ];
      for (const [query, field] of cases) expectInvalid(await as(owner).get(`/api/deliveries?${query}`), field);
    });

    it('answers 404 for an unknown or malformed id', async () => {
      for (const id of [UNKNOWN_ID, 'nope']) {
        for (const response of [
          await as(seed.operatorUser).get(`/api/deliveries/${id}`),
          await as(seed.operatorUser).post(`/api/deliveries/${id}/replay`),
        ]) {
          expect(response.status).toBe(404);
          expect(response.body).toEqual({ statusCode: 404, code: 'NOT_FOUND', message: expect.any(String) });
        }
      }
    });
  });

  describe('visibility', () => {
    let mine: { id: string };
    let theirs: { id: string };
    let theirsBackendId: string;
    let toApplication: { id: string };

    beforeAll(async () => {
      const mineBackendId = await register(owner);
      theirsBackendId = await register(other);
      [mine, theirs, toApplication] = await enqueue(
        { target: { backendId: mineBackendId } },
        { target: { backendId: theirsBackendId } },
        { target: { applicationId: seed.application.id, url: receiver.url() } },
      );
      for (const { id } of [mine, theirs, toApplication]) await settled(id, 'SUCCEEDED');
    });

    it("a backend-only machine user sees its own backends' deliveries and nothing else", async () => {
      const listed = await listIds(owner);
      expect(listed).toContain(mine.id);
      expect(listed).not.toContain(theirs.id);
      expect(listed).not.toContain(toApplication.id);
      expect(await listIds(owner, `&backendId=${theirsBackendId}`)).toEqual([]);
      expect(await listIds(other)).toEqual([theirs.id]);

      for (const response of [
        await as(owner).get(`/api/deliveries/${theirs.id}`),
        await as(owner).post(`/api/deliveries/${theirs.id}/replay`),
        await as(owner).get(`/api/deliveries/${toApplication.id}`),
        await as(owner).post(`/api/machine/backends/${theirsBackendId}/recover`, { since: '2020-01-01T00:00:00Z' }),
      ]) {
        expect(response.status).toBe(404);
      }
      // The refused replay changed nothing.
      expect(await settled(theirs.id, 'SUCCEEDED', 1)).toBeTruthy();
    });

    it('a backend-only machine user without backends sees an empty list', async () => {
      const newcomer = await createMachineUser(t, seed.tenant.id, ['backend']);
      expect((await as(newcomer).get('/api/deliveries?includeTotal=true').expect(200)).body).toEqual({
        items: [],
        nextCursor: null,
        total: 0,
      });
    });

    it('an operator sees every delivery of its tenant, application-signed ones included', async () => {
      const listed = await listIds(seed.operatorUser);
      expect(listed).toEqual(expect.arrayContaining([mine.id, theirs.id, toApplication.id]));
      const detail = await as(seed.operatorUser).get(`/api/deliveries/${toApplication.id}`).expect(200);
      expect(detail.body).toMatchObject({ backendId: null, applicationId: seed.application.id, url: receiver.url() });
    });
  });

  describe('POST /api/machine/backends/:id/recover', () => {
    it('replays the DEAD deliveries of that backend created since the given time: 202 {count}', async () => {
      const backendId = await register(owner);
      const bystanderBackend = await register(owner);
      const [before, bystander] = await enqueue(
        { target: { backendId }, body: { fail: true, n: 1 } },
        { target: { backendId: bystanderBackend }, body: { fail: true } },
      );
      const beforeDead = await settled(before.id, 'DEAD', 3);
      await settled(bystander.id, 'DEAD', 3);
      const since = new Date(Date.parse(beforeDead.createdAt) + 1).toISOString();
      const [after, succeeded] = await enqueue(
        { target: { backendId }, body: { fail: true, n: 2 } },
        { target: { backendId } },
      );
      await settled(after.id, 'DEAD', 3);
      await settled(succeeded.id, 'SUCCEEDED', 1);

      // The receiver is fixed; only the delivery created since `since` is sent again.
      const fixedReceiver = receiver.handler;
      receiver.handler = (_req, res) => res.json({ status: 'success' });
      try {
        const recovered = await as(owner).post(`/api/machine/backends/${backendId}/recover`, { since }).expect(202);
        expect(recovered.body).toEqual({ count: 1 });
        expect(await settled(after.id, 'SUCCEEDED', 4)).toMatchObject({ webhookId: after.webhookId });
        expect(await settled(before.id, 'DEAD', 3)).toBeTruthy();
        expect(await settled(bystander.id, 'DEAD', 3)).toBeTruthy();
        expect(await settled(succeeded.id, 'SUCCEEDED', 1)).toBeTruthy();

        // `since` is inclusive: the first one's own creation time takes it in.
        const again = await as(owner)
          .post(`/api/machine/backends/${backendId}/recover`, { since: beforeDead.createdAt })
          .expect(202);
        expect(again.body).toEqual({ count: 1 });
        await settled(before.id, 'SUCCEEDED', 4);
      } finally {
        receiver.handler = fixedReceiver;
      }
      expect(receiver.requestsFor(before.webhookId)).toHaveLength(4);
      expect(receiver.requestsFor(bystander.webhookId)).toHaveLength(3);
    });

    it('is 409 CONFLICT on a disabled backend and replays nothing', async () => {
      const backendId = await register(owner);
      const [dead] = await enqueue({ target: { backendId }, body: { fail: true } });
      await settled(dead.id, 'DEAD', 3);
      await t.http
        .patch(`/api/machine/backends/${backendId}`)
        .set(bearer(owner.token))
        .send({ enabled: false })
        .expect(200);

      const response = await as(owner).post(`/api/machine/backends/${backendId}/recover`, {
        since: '2020-01-01T00:00:00Z',
      });
      expect(response.status).toBe(409);
      expect(response.body).toEqual({ statusCode: 409, code: 'CONFLICT', message: expect.any(String) });
      expect(await settled(dead.id, 'DEAD', 3)).toBeTruthy();
    });

    it('refuses a missing or malformed since and unknown fields', async () => {
      const backendId = await register(owner);
      const path = `/api/machine/backends/${backendId}/recover`;
      expectInvalid(await as(owner).post(path, {}), 'since');
      expectInvalid(await as(owner).post(path, { since: 'yesterday' }), 'since');
      expectInvalid(await as(owner).post(path, { since: 1764583200 }), 'since');
      expectInvalid(await as(owner).post(path, { since: '2025-12-01T00:00:00Z', limit: 5 }), 'limit');
      const unknown = await as(owner).post(`/api/machine/backends/${UNKNOWN_ID}/recover`, {
        since: '2025-12-01T00:00:00Z',
      });
      expect(unknown.status).toBe(404);
    });
  });
});
