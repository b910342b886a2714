import { randomUUID } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import { DomainException } from '../common/errors.js';
import { AppConfig } from '../config/app-config.js';
import { RegistryService } from '../registry/registry.service.js';
import { DeliveryMetrics } from './delivery.metrics.js';
import { DeliveryOutcomes } from './delivery-outcomes.js';
import { type AttemptResult, DeliveryRepository, type DeliveryRow } from './delivery.repository.js';
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
    const id = randomUUID();
    const webhookId = newWebhookId();
    let url: string;
    let parked = false;
    let backendId: string | null = null;
    let applicationId: string | null = null;
    if ('backendId' in message.target) {
      const backend = await this.registry.getDeliveryTarget(message.target.backendId);
      if (!backend || backend.tenantId !== message.tenantId) throw DomainException.field('backendId', 'unknown backend');
      backendId = backend.id;
      url = message.target.url ?? backend.callbackUrl;
      parked = !backend.enabled;
    } else {
      applicationId = message.target.applicationId;
      url = message.target.url;
    }
    const status = parked ? 'PARKED' : 'PENDING';
    await this.repository.insert(em, {
      id,
      tenantId: message.tenantId,
      webhookId,
      backendId,
      applicationId,
      url,
      explicitUrl: 'url' in message.target && message.target.url !== undefined,
      method: message.method ?? 'POST',
      headers: message.headers ?? {},
      body: message.body,
      status,
      nextAttemptAt: parked ? null : new Date(Date.now() + this.config.deliveryRetryScheduleMs[0]),
      originType: message.origin.type,
      originId: message.origin.id,
    });
    if (!parked) await this.repository.notify(em);
    this.metrics.enqueued.inc();
    return { id, webhookId, status };
  }

  /**
   * Applies an attempt's result, if this replica's lease still holds the delivery (a lease that
   * expired meanwhile belongs to whoever reclaimed it; the attempt is logged all the same).
   */
  async recordResult(delivery: DeliveryRow, leaseToken: string, result: SendResult, release = false): Promise<void> {
    await this.em.fork().transactional(async (em) => {
      await this.repository.recordAttempt(em, {
        deliveryId: delivery.id,
        tenantId: delivery.tenant_id,
        attempt: delivery.attempts,
        statusCode: result.statusCode,
        durationMs: Math.round(result.durationMs),
        responseExcerpt: result.responseExcerpt,
        error: result.error,
      });
      const current = await this.repository.lockLeased(em, delivery.id, leaseToken);
      if (!current) return;
      const outcome: AttemptResult = {
        statusCode: result.statusCode,
        error: result.error,
        responseExcerpt: result.responseExcerpt,
      };
      if (result.succeeded) {
        await this.finish(em, current, 'SUCCEEDED', outcome);
      } else if (release) {
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
    });
    this.metrics.attempts.inc({ result: result.succeeded ? 'success' : 'failure' });
    this.metrics.attemptDuration.observe(result.durationMs / 1000);
  }

  /** A delivery that cannot be attempted at all (its backend vanished) dies with that reason. */
  async abandon(delivery: DeliveryRow, leaseToken: string, error: string): Promise<void> {
    await this.em.fork().transactional(async (em) => {
      const current = await this.repository.lockLeased(em, delivery.id, leaseToken);
      if (current) await this.finish(em, current, 'DEAD', { statusCode: null, error, responseExcerpt: null });
    });
  }

  /** A delivery claimed while its backend is disabled waits, parked, for the backend to return. */
  async park(delivery: DeliveryRow, leaseToken: string, error: string): Promise<void> {
    await this.em.fork().transactional(async (em) => {
      const current = await this.repository.lockLeased(em, delivery.id, leaseToken);
      if (current) await this.finish(em, current, 'PARKED', { statusCode: null, error, responseExcerpt: null });
    });
  }

  async unparkBackend(em: EntityManager, backendId: string): Promise<void> {
    const count = await this.repository.unparkBackend(em, backendId);
    if (count > 0) {
      await this.repository.notify(em);
      this.logger.log(`backend ${backendId} enabled again: re-queued ${count} parked deliveries`);
    }
  }

  private async parkGoneBackend(em: EntityManager, delivery: DeliveryRow, result: AttemptResult): Promise<void> {
    await this.registry.disableBackend(em, delivery.backend_id!);
    await this.finish(em, delivery, 'PARKED', result);
    const parked = await this.repository.parkPendingOfBackend(em, delivery.backend_id!);
    for (const other of parked) await this.report(em, other, 'PARKED', { ...result, error: 'backend answered 410 Gone' });
    this.logger.warn(`backend ${delivery.backend_id} answered 410 Gone: disabled, ${parked.length + 1} deliveries parked`);
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

function parseBody(excerpt: string | null): unknown {
  if (excerpt === null || excerpt === '') return null;
  try {
    return JSON.parse(excerpt);
  } catch {
    return excerpt;
  }
}
