import { Injectable } from '@nestjs/common';
import { EntityManager, type FilterQuery } from '@mikro-orm/postgresql';
import type { MachinePrincipal } from '../auth/principal.js';
import { ROLE_OPERATOR } from '../auth/principal.js';
import { DomainException } from '../common/errors.js';
import { type Page, paginate } from '../common/pagination.js';
import { RegistryService } from '../registry/registry.service.js';
import { Delivery, DeliveryAttempt } from './delivery.entities.js';
import { DeliveryRepository } from './delivery.repository.js';
import type { DeliveryDetailResponse, DeliveryResponse, ListDeliveriesQuery } from './deliveries.dto.js';

export const RECOVER_LIMIT = 10_000;

/**
 * The deliveries API. An operator sees every delivery of its tenant; a backend-only machine
 * user sees the deliveries to the backends it registered.
 */
@Injectable()
export class DeliveryApiService {
  constructor(
    private readonly em: EntityManager,
    private readonly repository: DeliveryRepository,
    private readonly registry: RegistryService,
  ) {}

  async list(principal: MachinePrincipal, query: ListDeliveriesQuery): Promise<Page<DeliveryResponse>> {
    const where: FilterQuery<Delivery> = principal.scoped<Delivery>({
      ...(query.backendId && { backendId: query.backendId }),
      ...(query.status && { status: query.status }),
      ...(query.since && { createdAt: { $gte: new Date(query.since) } }),
    });
    const visible = await this.visibleBackends(principal);
    const scoped = visible === null ? where : { $and: [where, { backendId: { $in: visible } }] };
    return paginate(this.em, Delivery, scoped, query, presentDelivery);
  }

  async get(principal: MachinePrincipal, id: string): Promise<DeliveryDetailResponse> {
    const delivery = await this.find(principal, id);
    const attempts = await this.em.find(
      DeliveryAttempt,
      { deliveryId: id, tenantId: principal.tenantId },
      {
        orderBy: { attempt: 'asc', at: 'asc' },
      },
    );
    return {
      ...presentDelivery(delivery),
      attemptLog: attempts.map((attempt) => ({
        at: attempt.at.toISOString(),
        statusCode: attempt.statusCode,
        durationMs: attempt.durationMs,
        responseExcerpt: attempt.responseExcerpt,
        error: attempt.error,
      })),
    };
  }

  async replay(principal: MachinePrincipal, id: string): Promise<DeliveryResponse> {
    const delivery = await this.find(principal, id);
    if (delivery.status === 'PENDING' || delivery.status === 'SENDING') {
      throw new DomainException('CONFLICT', `Delivery is ${delivery.status}; only finished or parked ones replay`);
    }
    return this.em.transactional(async (em) => {
      if ((await this.repository.replay(em, [id])) === 0) {
        throw new DomainException('CONFLICT', 'Delivery changed state meanwhile; try again');
      }
      await this.repository.notify(em);
      // Read back before commit: a worker may claim the delivery the moment it commits, and the answer should
      // show what the replay did (PENDING, same attempts), not however far a worker has got since.
      return presentDelivery((await em.findOne(Delivery, { id }, { refresh: true }))!);
    });
  }

  async recover(principal: MachinePrincipal, backendId: string, since: string): Promise<{ count: number }> {
    const backend = await this.registry.findAccessibleBackend(principal, backendId);
    if (!backend.enabled) throw new DomainException('CONFLICT', 'The backend is disabled; enable it first');
    const count = await this.em.transactional(async (em) => {
      const ids = await this.repository.recoverableOfBackend(em, backendId, new Date(since), RECOVER_LIMIT);
      const replayed = await this.repository.replay(em, ids);
      if (replayed > 0) await this.repository.notify(em);
      return replayed;
    });
    return { count };
  }

  /** Null: every backend of the tenant (operator). */
  private async visibleBackends(principal: MachinePrincipal): Promise<string[] | null> {
    if (principal.hasRole(ROLE_OPERATOR)) return null;
    return this.registry.ownedBackendIds(principal);
  }

  private async find(principal: MachinePrincipal, id: string): Promise<Delivery> {
    const delivery = await this.em.findOne(Delivery, principal.scoped<Delivery>({ id }));
    const visible = delivery && (await this.visibleBackends(principal));
    if (!delivery || (visible && !(delivery.backendId && visible.includes(delivery.backendId)))) {
      throw DomainException.notFound('Delivery');
    }
    return delivery;
  }
}

export function presentDelivery(delivery: Delivery): DeliveryResponse {
  return {
    id: delivery.id,
    webhookId: delivery.webhookId,
    backendId: delivery.backendId,
    applicationId: delivery.applicationId,
    url: delivery.url,
    status: delivery.status,
    attempts: delivery.attempts,
    nextAttemptAt: delivery.nextAttemptAt?.toISOString() ?? null,
    lastStatusCode: delivery.lastStatusCode,
    lastError: delivery.lastError,
    origin: { type: delivery.originType, id: delivery.originId },
    createdAt: delivery.createdAt.toISOString(),
    finishedAt: delivery.finishedAt?.toISOString() ?? null,
  };
}
