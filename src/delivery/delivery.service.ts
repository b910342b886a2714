import { randomUUID } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import { DomainException } from '../common/errors.js';
import { AppConfig } from '../config/app-config.js';
import { RegistryService } from '../registry/registry.service.js';
import type { BackendSummary } from '../registry/registry.types.js';
import { DeliveryMetrics } from './delivery.metrics.js';
import { DeliveryOutcomes } from './delivery-outcomes.js';
import {
  type AttemptResult,
  DeliveryRepository,
  type DeliveryRow,
  type NewDeliveryRow,
} from './delivery.repository.js';
import type { DeliveryOutcome, EnqueuedDelivery, OutboundMessage } from './delivery.types.js';
import { nextAttemptDelayMs } from './retry-policy.js';
import { newWebhookId } from './webhook-signer.js';
import type { SendResult } from './webhook-sender.js';

/**
 * The delivery engine's rules: the outbox (enqueue inside the caller's transaction) and what
 * an attempt's result does to a delivery: succeed, retry later, park (410) or die.
 */
@Injectable()
export class DeliveryService {
  private readonly logger = new Logger(DeliveryService.name);

  constructor(
    private readonly em: EntityManager,
    private readonly repository: DeliveryRepository,
    private readonly outcomes: DeliveryOutcomes,
    private readonly registry: RegistryService,
    private readonly metrics: DeliveryMetrics,
    private readonly config: AppConfig,
  ) {
    registry.onBackendEnabled((em, backendId) => this.unparkBackend(em, backendId));
  }

  /**
   * Writes the delivery in the caller's transaction (`em` must be transactional for the
   * outbox guarantee): the firing or step and its deliveries commit or roll back together.
   */
  async enqueue(em: EntityManager, message: OutboundMessage): Promise<EnqueuedDelivery> {
    const [enqueued] = await this.enqueueMany(em, [message]);
    return enqueued;
  }

  /**
   * `enqueue` for several messages at once, in order: one lookup per distinct backend, one INSERT
   * and one NOTIFY for all of them. The cron scheduler fires up to 100 triggers per transaction,
   * and four round trips per delivery capped a busy second at a few hundred firings.
   */
  async enqueueMany(em: EntityManager, messages: readonly OutboundMessage[]): Promise<EnqueuedDelivery[]> {
    const targets = new Map<string, Promise<BackendSummary | null>>();
    const rows: NewDeliveryRow[] = [];
    for (const message of messages) {
      let url: string;
      let parked = false;
      let backendId: string | null = null;
      let applicationId: string | null = null;
      if ('backendId' in message.target) {
        const wanted = message.target.backendId;
        let lookup = targets.get(wanted);
        // Read in the caller's transaction: a second pooled connection per open transaction can
        // exhaust the pool under load (every holder waiting for another connection).
        if (!lookup) targets.set(wanted, (lookup = this.registry.findBackend(message.tenantId, wanted, em)));
        const backend = await lookup;
        if (!backend || backend.tenantId !== message.tenantId) {
          throw DomainException.field('backendId', 'unknown backend');
        }
        backendId = backend.id;
        url = message.target.url ?? backend.callbackUrl;
        parked = !backend.enabled;
      } else {
        applicationId = message.target.applicationId;
        url = message.target.url;
      }
      rows.push({
        id: randomUUID(),
        tenantId: message.tenantId,
        webhookId: newWebhookId(),
        backendId,
        applicationId,
        url,
        explicitUrl: 'url' in message.target && message.target.url !== undefined,
        method: message.method ?? 'POST',
        headers: message.headers ?? {},
        body: message.body,
        status: parked ? 'PARKED' : 'PENDING',
        nextAttemptAt: parked ? null : new Date(Date.now() + this.config.deliveryRetryScheduleMs[0]),
        originType: message.origin.type,
        originId: message.origin.id,
      });
    }
    await this.repository.insertMany(em, rows);
    if (rows.some((row) => row.status === 'PENDING')) await this.repository.notify(em);
    this.metrics.enqueued.inc(rows.length);
    return rows.map((row) => ({ id: row.id, webhookId: row.webhookId, status: row.status }));
  }

  /**
   * Applies an attempt's result, if this replica's lease still holds the delivery (a lease that
   * expired meanwhile belongs to whoever reclaimed it; the attempt is logged all the same).
   */
  async recordResult(delivery: DeliveryRow, leaseToken: string, result: SendResult, release = false): Promise<void> {
    await this.recordResults([{ delivery, leaseToken, result, release }]);
  }

  /**
   * recordResult for several attempts in one transaction: one commit per batch instead of one per
   * delivery, for a worker with many results at once. All or nothing: after an error nothing is recorded.
   * Successes, the bulk at high throughput, take two statements per batch (recordSuccesses); the
   * rest one by one.
   */
  async recordResults(items: readonly AttemptToRecord[]): Promise<void> {
    await this.em.fork().transactional(async (em) => {
      await this.recordSuccesses(
        em,
        items.filter((item) => item.result.succeeded),
      );
      for (const { delivery, leaseToken, result, release = false } of items) {
        if (result.succeeded) continue;
        const error = failureReason(result);
        await this.repository.recordAttempt(em, {
          deliveryId: delivery.id,
          tenantId: delivery.tenant_id,
          attempt: delivery.attempts,
          leaseToken,
          statusCode: result.statusCode,
          durationMs: Math.round(result.durationMs),
          responseExcerpt: result.responseExcerpt,
          error,
        });
        const current = await this.repository.lockLeased(em, delivery.id, leaseToken);
        if (!current) continue;
        const outcome: AttemptResult = {
          statusCode: result.statusCode,
          error,
          responseExcerpt: result.responseExcerpt,
        };
        if (release) {
          await this.repository.release(em, current.id, outcome);
        } else if (result.statusCode === 410 && current.backend_id) {
          await this.parkGoneBackend(em, current, outcome);
        } else {
          const delay = nextAttemptDelayMs(
            this.config.deliveryRetryScheduleMs,
            current.attempts - current.budget_start,
            result.statusCode === 429 || result.statusCode === 503 ? result.retryAfterMs : null,
          );
          if (delay === null) await this.finish(em, current, 'DEAD', outcome);
          else await this.repository.retryLater(em, current.id, delay, outcome);
        }
      }
    });
    for (const { result } of items) {
      this.metrics.attempts.inc({ result: result.succeeded ? 'success' : 'failure' });
      this.metrics.attemptDuration.observe(result.durationMs / 1000);
    }
  }

  /** The SUCCEEDED branch of recordResult for many attempts: log them all, finish those still leased to us. */
  private async recordSuccesses(em: EntityManager, items: readonly AttemptToRecord[]): Promise<void> {
    const outcomes = items.map(({ delivery, leaseToken, result }) => ({
      delivery,
      leaseToken,
      result,
      outcome: { statusCode: result.statusCode, error: failureReason(result), responseExcerpt: result.responseExcerpt },
    }));
    await this.repository.recordAttempts(
      em,
      outcomes.map(({ delivery, leaseToken, result, outcome }) => ({
        deliveryId: delivery.id,
        tenantId: delivery.tenant_id,
        attempt: delivery.attempts,
        leaseToken,
        statusCode: result.statusCode,
        durationMs: Math.round(result.durationMs),
        responseExcerpt: result.responseExcerpt,
        error: outcome.error,
      })),
    );
    const finished = await this.repository.finishSucceeded(
      em,
      outcomes.map(({ delivery, leaseToken, outcome }) => ({ id: delivery.id, leaseToken, result: outcome })),
    );
    const byId = new Map(outcomes.map((item) => [item.delivery.id, item.outcome]));
    for (const row of finished) {
      await this.report(em, row, 'SUCCEEDED', byId.get(row.id)!);
      this.metrics.finished.inc({ status: 'SUCCEEDED' });
    }
  }

  /** A delivery that cannot be attempted at all (its backend vanished) dies with that reason. */
  async abandon(delivery: DeliveryRow, leaseToken: string, error: string): Promise<void> {
    await this.finishUnsent(delivery, leaseToken, 'DEAD', error);
  }

  /** A delivery claimed while its backend is disabled waits, parked, for the backend to return. */
  async park(delivery: DeliveryRow, leaseToken: string, error: string): Promise<void> {
    await this.finishUnsent(delivery, leaseToken, 'PARKED', error);
  }

  async unparkBackend(em: EntityManager, backendId: string): Promise<void> {
    const count = await this.repository.unparkBackend(em, backendId);
    if (count > 0) {
      await this.repository.notify(em);
      this.logger.log(`backend ${backendId} enabled again: re-queued ${count} parked deliveries`);
    }
  }

  /**
   * Claimed but never sent (the backend is off or gone): the claim counted an attempt that was not made, so it is
   * taken back (SPEC: `attempts` counts attempts made), and the attempt log gets no entry.
   */
  private async finishUnsent(
    delivery: DeliveryRow,
    leaseToken: string,
    status: 'DEAD' | 'PARKED',
    error: string,
  ): Promise<void> {
    await this.em.fork().transactional(async (em) => {
      const current = await this.repository.lockLeased(em, delivery.id, leaseToken);
      if (!current) return;
      await this.repository.uncountClaim(em, current.id);
      await this.finish(em, current, status, { statusCode: null, error, responseExcerpt: null });
    });
  }

  private async parkGoneBackend(em: EntityManager, delivery: DeliveryRow, result: AttemptResult): Promise<void> {
    await this.registry.disableBackend(em, delivery.backend_id!);
    await this.finish(em, delivery, 'PARKED', result);
    const reason = 'the backend answered 410 Gone and was disabled';
    const parked = await this.repository.parkPendingOfBackend(em, delivery.backend_id!, reason);
    for (const other of parked) await this.report(em, other, 'PARKED', { ...result, error: reason });
    if (parked.length > 0) this.metrics.finished.inc({ status: 'PARKED' }, parked.length);
    this.logger.warn(
      `backend ${delivery.backend_id} answered 410 Gone: disabled, ${parked.length + 1} deliveries parked`,
    );
  }

  private async finish(
    em: EntityManager,
    delivery: DeliveryRow,
    status: 'SUCCEEDED' | 'DEAD' | 'PARKED',
    result: AttemptResult,
  ): Promise<void> {
    await this.repository.finish(em, delivery.id, status, result);
    await this.report(em, delivery, status, result);
    this.metrics.finished.inc({ status });
  }

  private async report(
    em: EntityManager,
    delivery: DeliveryRow,
    status: DeliveryOutcome['status'],
    result: AttemptResult,
  ): Promise<void> {
    await this.outcomes.report(em, {
      deliveryId: delivery.id,
      tenantId: delivery.tenant_id,
      origin: { type: delivery.origin_type, id: delivery.origin_id },
      status,
      statusCode: result.statusCode,
      responseBody: parseBody(result.responseExcerpt),
      error: result.error,
    });
  }
}

/** One attempt's result, for recordResults. */
export interface AttemptToRecord {
  delivery: DeliveryRow;
  leaseToken: string;
  result: SendResult;
  /** The replica is shutting down: hand the delivery back for any replica to take at once. */
  release?: boolean;
}

/**
 * Why an attempt failed, for the attempt log and `lastError`. The sender names network trouble; a 2xx can only fail
 * by its body (SPEC §5), which would otherwise leave a failed attempt that reads "200, no error".
 */
function failureReason(result: SendResult): string | null {
  if (result.error !== null || result.succeeded) return result.error;
  const status = result.statusCode;
  return status !== null && status >= 200 && status < 300 ? 'the receiver answered {"status": "error"}' : null;
}

function parseBody(excerpt: string | null): unknown {
  if (excerpt === null || excerpt === '') return null;
  try {
    return JSON.parse(excerpt);
  } catch {
    return excerpt;
  }
}
