import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import { REPLICA_NAME } from '../common/replica.js';
import type { DeliveryStatus, OriginType } from './delivery.types.js';

export const DELIVERY_CHANNEL = 'switchyard_deliveries';

export interface DeliveryRow {
  id: string;
  tenant_id: string;
  webhook_id: string;
  backend_id: string | null;
  application_id: string | null;
  url: string;
  /** False: follow the backend's current callback URL. */
  explicit_url: boolean;
  method: string;
  headers: Record<string, string>;
  body: string;
  status: DeliveryStatus;
  attempts: number;
  budget_start: number;
  /** Raw rows carry timestamps as text (MikroORM leaves type parsing to its entity hydration). */
  next_attempt_at: string | null;
  leased_by: string | null;
  last_status_code: number | null;
  last_error: string | null;
  response_excerpt: string | null;
  origin_type: OriginType;
  origin_id: string;
  created_at: string;
  finished_at: string | null;
}

export interface NewDeliveryRow {
  id: string;
  tenantId: string;
  webhookId: string;
  backendId: string | null;
  applicationId: string | null;
  url: string;
  explicitUrl: boolean;
  method: string;
  headers: Record<string, string>;
  body: string;
  status: 'PENDING' | 'PARKED';
  nextAttemptAt: Date | null;
  originType: OriginType;
  originId: string;
}

export interface AttemptRecord {
  deliveryId: string;
  tenantId: string;
  attempt: number;
  /** The lease the attempt was made under: it names the replica that made it. */
  leaseToken: string | null;
  statusCode: number | null;
  durationMs: number;
  responseExcerpt: string | null;
  error: string | null;
}

export interface AttemptResult {
  statusCode: number | null;
  error: string | null;
  responseExcerpt: string | null;
}

export interface ClaimOptions {
  capacity: number;
  /** At most this many deliveries of one target per claim, so one backend cannot fill a batch. */
  perTarget: number;
  /** Targets already at their in-flight cap on this replica. */
  busyTargets: string[];
  leaseMs: number;
}

/** A delivery reclaimed from a lease that expired, with the token its replica held. */
export interface ReclaimedRow extends DeliveryRow {
  expired_lease: string | null;
}

/**
 * Every statement of the delivery engine that matters. Claims take due rows with
 * FOR UPDATE SKIP LOCKED, so replicas never block on or double-claim each other's rows, and
 * stamp a fresh lease token: only the holder of the current token may record the outcome.
 */
@Injectable()
export class DeliveryRepository {
  async insert(em: EntityManager, row: NewDeliveryRow): Promise<void> {
    await this.insertMany(em, [row]);
  }

  /**
   * Several deliveries with one statement (a scheduler batch's fan-out). created_at is cut to
   * milliseconds: lists page by (created_at, id) with a cursor holding a JavaScript Date, and a
   * microsecond the cursor cannot express would make the next page skip rows (all of one
   * transaction's, which share now()).
   */
  async insertMany(em: EntityManager, rows: readonly NewDeliveryRow[]): Promise<void> {
    if (rows.length === 0) return;
    await em.execute(
      `insert into deliveries (id, tenant_id, webhook_id, backend_id, application_id, url, explicit_url, method, headers,
                               body,
                               status, next_attempt_at, origin_type, origin_id, created_at, updated_at)
       values ${rows.map(() => `(?, ?, ?, ?, ?, ?, ?, ?, ?::jsonb, ?, ?, ?, ?, ?, date_trunc('milliseconds', now()), now())`).join(', ')}`,
      rows.flatMap((row) => [
        row.id,
        row.tenantId,
        row.webhookId,
        row.backendId,
        row.applicationId,
        row.url,
        row.explicitUrl,
        row.method,
        JSON.stringify(row.headers),
        row.body,
        row.status,
        row.nextAttemptAt,
        row.originType,
        row.originId,
      ]),
    );
  }

  /** Wakes idle workers on every replica once the enqueuing transaction commits. */
  async notify(em: EntityManager): Promise<void> {
    await em.execute(`select pg_notify('${DELIVERY_CHANNEL}', '')`);
  }

  async claimDue(em: EntityManager, options: ClaimOptions): Promise<{ leaseToken: string; rows: DeliveryRow[] }> {
    const leaseToken = newLeaseToken();
    const rows = await em.execute<DeliveryRow[]>(
      `with candidates as (
         select id, coalesce(backend_id, application_id) as target, next_attempt_at
           from deliveries
          where status = 'PENDING' and next_attempt_at <= now()
          order by next_attempt_at
          limit ?
          for update skip locked
       ), chosen as (
         select id from (
           select id, next_attempt_at,
                  row_number() over (partition by target order by next_attempt_at) as place
             from candidates
            where not (target = any(?::uuid[]))
         ) ranked
          where place <= ?
          order by next_attempt_at
          limit ?
       )
       update deliveries d
          set status = 'SENDING', attempts = d.attempts + 1, leased_until = now() + make_interval(secs => ?),
              leased_by = ?, updated_at = now()
         from chosen
        where d.id = chosen.id
       returning d.*`,
      [
        options.capacity * 4,
        uuidArray(options.busyTargets),
        options.perTarget,
        options.capacity,
        options.leaseMs / 1000,
        leaseToken,
      ],
    );
    return { leaseToken, rows };
  }

  /**
   * Hands deliveries whose replica died back to the queue. The attempt already counted when it
   * was claimed; whether it reached the receiver is unknown, which is why receivers dedupe.
   */
  async reclaimExpiredLeases(em: EntityManager, limit = 500): Promise<ReclaimedRow[]> {
    return em.execute<ReclaimedRow[]>(
      `with expired as (
         select id, leased_by from deliveries
          where status = 'SENDING' and leased_until < now()
          limit ?
          for update skip locked
       )
       update deliveries d
          set status = 'PENDING', next_attempt_at = now(), leased_until = null, leased_by = null, updated_at = now()
         from expired
        where d.id = expired.id
       returning d.*, expired.leased_by as expired_lease`,
      [limit],
    );
  }

  /** Gives a leased delivery back for any replica to take at once (this one is shutting down). */
  async release(em: EntityManager, id: string, result: AttemptResult): Promise<void> {
    await this.retryLater(em, id, 0, result);
  }

  /** Locks the delivery if this lease still holds it; null when the lease was lost meanwhile. */
  async lockLeased(em: EntityManager, id: string, leaseToken: string): Promise<DeliveryRow | null> {
    const rows = await em.execute<DeliveryRow[]>(
      `select * from deliveries where id = ? and status = 'SENDING' and leased_by = ? for update`,
      [id, leaseToken],
    );
    return rows[0] ?? null;
  }

  async recordAttempt(em: EntityManager, attempt: AttemptRecord): Promise<void> {
    await em.execute(
      `insert into delivery_attempts (id, tenant_id, delivery_id, attempt, replica, at, status_code, duration_ms,
                                      response_excerpt, error)
       values (?, ?, ?, ?, ?, now(), ?, ?, ?, ?)`,
      [
        randomUUID(),
        attempt.tenantId,
        attempt.deliveryId,
        attempt.attempt,
        leaseHolder(attempt.leaseToken),
        attempt.statusCode,
        attempt.durationMs,
        attempt.responseExcerpt,
        attempt.error,
      ],
    );
  }

  /** recordAttempt for many attempts in one statement. */
  async recordAttempts(em: EntityManager, attempts: readonly AttemptRecord[]): Promise<void> {
    if (attempts.length === 0) return;
    await em.execute(
      `insert into delivery_attempts (id, tenant_id, delivery_id, attempt, replica, at, status_code, duration_ms,
                                      response_excerpt, error)
       values ${attempts.map(() => '(?, ?, ?, ?, ?, now(), ?, ?, ?, ?)').join(', ')}`,
      attempts.flatMap((attempt) => [
        randomUUID(),
        attempt.tenantId,
        attempt.deliveryId,
        attempt.attempt,
        leaseHolder(attempt.leaseToken),
        attempt.statusCode,
        attempt.durationMs,
        attempt.responseExcerpt,
        attempt.error,
      ]),
    );
  }

  /**
   * lockLeased + finish(SUCCEEDED) for many deliveries in one statement: each row still leased to
   * its token becomes SUCCEEDED; rows whose lease was lost meanwhile are left alone and not returned.
   */
  async finishSucceeded(
    em: EntityManager,
    items: readonly { id: string; leaseToken: string; result: AttemptResult }[],
  ): Promise<DeliveryRow[]> {
    if (items.length === 0) return [];
    return em.execute<DeliveryRow[]>(
      `update deliveries d
          set status = 'SUCCEEDED', next_attempt_at = null, leased_until = null, leased_by = null,
              last_status_code = v.status_code, last_error = v.error, response_excerpt = v.excerpt,
              updated_at = now(), finished_at = now()
         from (values ${items.map(() => '(?::uuid, ?::text, ?::integer, ?::text, ?::text)').join(', ')})
              as v (id, lease_token, status_code, error, excerpt)
        where d.id = v.id and d.status = 'SENDING' and d.leased_by = v.lease_token
       returning d.*`,
      items.flatMap(({ id, leaseToken, result }) => [
        id,
        leaseToken,
        result.statusCode,
        result.error,
        result.responseExcerpt,
      ]),
    );
  }

  async finish(
    em: EntityManager,
    id: string,
    status: 'SUCCEEDED' | 'DEAD' | 'PARKED',
    result: AttemptResult,
  ): Promise<void> {
    await em.execute(
      `update deliveries
          set status = ?, next_attempt_at = null, leased_until = null, leased_by = null,
              last_status_code = ?, last_error = ?, response_excerpt = ?, updated_at = now(),
              finished_at = case when ? = 'PARKED' then null else now() end
        where id = ?`,
      [status, result.statusCode, result.error, result.responseExcerpt, status, id],
    );
  }

  async retryLater(em: EntityManager, id: string, delayMs: number, result: AttemptResult): Promise<void> {
    await em.execute(
      `update deliveries
          set status = 'PENDING', next_attempt_at = now() + make_interval(secs => ?), leased_until = null,
              leased_by = null, last_status_code = ?, last_error = ?, response_excerpt = ?, updated_at = now()
        where id = ?`,
      [delayMs / 1000, result.statusCode, result.error, result.responseExcerpt, id],
    );
  }

  /** Parks every delivery of a backend still waiting for an attempt (its receiver answered 410). */
  async parkPendingOfBackend(em: EntityManager, backendId: string, reason: string): Promise<DeliveryRow[]> {
    return em.execute<DeliveryRow[]>(
      `update deliveries
          set status = 'PARKED', next_attempt_at = null, last_error = ?, updated_at = now()
        where backend_id = ? and status = 'PENDING'
       returning *`,
      [reason, backendId],
    );
  }

  /** Takes back the attempt a claim counted, for a leased delivery the worker then did not send. */
  async uncountClaim(em: EntityManager, id: string): Promise<void> {
    await em.execute(`update deliveries set attempts = attempts - 1 where id = ? and attempts > 0`, [id]);
  }

  /**
   * Extends a lease this token still holds to `leaseMs` from now (an attempt with a longer timeout than the lease
   * taken at claim time was sized for). False when the lease was lost meanwhile.
   */
  async extendLease(em: EntityManager, id: string, leaseToken: string, leaseMs: number): Promise<boolean> {
    const rows = await em.execute<{ id: string }[]>(
      `update deliveries set leased_until = now() + make_interval(secs => ?), updated_at = now()
        where id = ? and status = 'SENDING' and leased_by = ?
       returning id`,
      [leaseMs / 1000, id, leaseToken],
    );
    return rows.length === 1;
  }

  /** Re-queues a re-enabled backend's parked deliveries. */
  async unparkBackend(em: EntityManager, backendId: string): Promise<number> {
    const rows = await em.execute<{ id: string }[]>(
      `update deliveries
          set status = 'PENDING', next_attempt_at = now(), budget_start = attempts, updated_at = now()
        where backend_id = ? and status = 'PARKED'
       returning id`,
      [backendId],
    );
    return rows.length;
  }

  /** Puts finished deliveries back in the queue with a fresh attempt budget and the same webhook-id. */
  async replay(em: EntityManager, ids: string[]): Promise<number> {
    if (ids.length === 0) return 0;
    const rows = await em.execute<{ id: string }[]>(
      `update deliveries
          set status = 'PENDING', next_attempt_at = now(), budget_start = attempts, finished_at = null,
              updated_at = now()
        where id = any(?::uuid[]) and status in ('DEAD', 'PARKED', 'SUCCEEDED')
       returning id`,
      [uuidArray(ids)],
    );
    return rows.length;
  }

  async recoverableOfBackend(em: EntityManager, backendId: string, since: Date, limit: number): Promise<string[]> {
    const rows = await em.execute<{ id: string }[]>(
      `select id from deliveries
        where backend_id = ? and status in ('DEAD', 'PARKED') and created_at >= ?
        order by created_at
        limit ?`,
      [backendId, since, limit],
    );
    return rows.map((row) => row.id);
  }

  async queueStats(em: EntityManager): Promise<{ due: number; oldestDueAgeSeconds: number }> {
    const rows = await em.execute<{ due: string; oldest: Date | null }[]>(
      `select count(*) as due, min(next_attempt_at) as oldest
         from deliveries where status = 'PENDING' and next_attempt_at <= now()`,
    );
    const oldest = rows[0]?.oldest;
    return {
      due: Number(rows[0]?.due ?? 0),
      oldestDueAgeSeconds: oldest ? Math.max(0, (Date.now() - new Date(oldest).getTime()) / 1000) : 0,
    };
  }
}

/**
 * `<replica>/<uuid>`: fresh per claim, so a lease lost to expiry can never record an outcome, and
 * naming its replica, so `leased_by` says who holds a SENDING delivery.
 */
function newLeaseToken(): string {
  return `${REPLICA_NAME}/${randomUUID()}`;
}

function leaseHolder(leaseToken: string | null): string | null {
  const end = leaseToken?.lastIndexOf('/') ?? -1;
  return end > 0 ? leaseToken!.slice(0, end) : null;
}

/**
 * MikroORM expands a JS array parameter into a value list, so arrays travel as PostgreSQL array
 * literals instead (safe for UUIDs, which contain no quoting characters).
 */
function uuidArray(ids: readonly string[]): string {
  return `{${ids.join(',')}}`;
}
