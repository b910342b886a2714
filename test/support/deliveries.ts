import { randomUUID } from 'node:crypto';
import { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import { DELIVERY_CHANNEL } from '../../src/delivery/delivery.repository.js';
import { DeliveryService } from '../../src/delivery/delivery.service.js';
import type { EnqueuedDelivery } from '../../src/delivery/delivery.types.js';
import type { TestApp } from './app.js';
import { bearer } from './fixtures.js';

/**
 * Helpers for the delivery engine's multi-instance tests (crash, replicas, shutdown): enqueue the
 * way the service does (DeliveryService.enqueue inside a transaction, so the NOTIFY fires on
 * commit), read the outcome through the API, and look at raw rows and connections with SQL.
 */

/** Environment every delivering instance of these tests shares: local http receivers are allowed. */
export const LOCAL_CALLBACKS = { ALLOW_HTTP_CALLBACKS: 'true', CALLBACK_ALLOWED_HOSTS: '127.0.0.1' };

export interface RegisteredBackend {
  id: string;
  signingSecret: string;
  callbackUrl: string;
}

export async function registerBackend(t: TestApp, token: string, name: string, callbackUrl: string) {
  const response = await t.http
    .post('/api/machine/register-backend')
    .set(bearer(token))
    .send({ name, callbackUrl })
    .expect(201);
  return response.body as RegisteredBackend;
}

/**
 * Enqueues `count` deliveries through `t`'s DeliveryService, `batchSize` per transaction (one
 * commit, one NOTIFY each), spread round-robin over `backendIds`. Bodies are `{"seq":n}`.
 */
export async function enqueueMany(
  t: TestApp,
  options: { tenantId: string; backendIds: string[]; count: number; batchSize?: number },
): Promise<EnqueuedDelivery[]> {
  const orm = t.app.get(MikroORM);
  const service = t.app.get(DeliveryService);
  const batchSize = options.batchSize ?? 100;
  const enqueued: EnqueuedDelivery[] = [];
  for (let start = 0; start < options.count; start += batchSize) {
    const end = Math.min(options.count, start + batchSize);
    const batch = await orm.em.fork().transactional(async (em) => {
      const created: EnqueuedDelivery[] = [];
      for (let seq = start; seq < end; seq++) {
        created.push(
          await service.enqueue(em, {
            tenantId: options.tenantId,
            target: { backendId: options.backendIds[seq % options.backendIds.length] },
            body: JSON.stringify({ seq }),
            origin: { type: 'trigger_run', id: randomUUID() },
          }),
        );
      }
      return created;
    });
    enqueued.push(...batch);
  }
  return enqueued;
}

export async function enqueueOne(t: TestApp, tenantId: string, backendId: string, body = '{}') {
  const orm = t.app.get(MikroORM);
  return orm.em.fork().transactional((em) =>
    t.app.get(DeliveryService).enqueue(em, {
      tenantId,
      target: { backendId },
      body,
      origin: { type: 'trigger_run', id: randomUUID() },
    }),
  );
}

export interface DeliveryDetail {
  id: string;
  webhookId: string;
  status: string;
  attempts: number;
  nextAttemptAt: string | null;
  lastStatusCode: number | null;
  attemptLog: { at: string; statusCode: number | null; durationMs: number; error: string | null }[];
}

/** GET /api/deliveries/:id, as the machine user owning the backend sees it. */
export async function getDelivery(t: TestApp, token: string, id: string): Promise<DeliveryDetail> {
  const response = await t.http.get(`/api/deliveries/${id}`).set(bearer(token)).expect(200);
  return response.body as DeliveryDetail;
}

/** One query on its own connection (the apps' pools stay out of it). */
export async function sql<T extends pg.QueryResultRow>(url: string, text: string, params: unknown[] = []) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(text, params)).rows;
  } finally {
    await client.end();
  }
}

/**
 * How many delivery workers are LISTENing on this database right now: each holds one connection
 * whose only statement is the LISTEN (other workers, e.g. flows', listen on other channels).
 */
export async function listenerCount(url: string): Promise<number> {
  const rows = await sql<{ count: string }>(
    url,
    `select count(*) from pg_stat_activity where datname = current_database() and query = $1`,
    [`listen ${DELIVERY_CHANNEL}`],
  );
  return Number(rows[0].count);
}

/** Sum of a prom-client counter's values over every label set. */
export async function counterTotal(counter: { get(): Promise<{ values: { value: number }[] }> }): Promise<number> {
  const { values } = await counter.get();
  return values.reduce((sum, { value }) => sum + value, 0);
}
