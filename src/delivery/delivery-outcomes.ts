import { Injectable } from '@nestjs/common';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { DeliveryOutcome, OriginType } from './delivery.types.js';

export type OutcomeHandler = (em: EntityManager, outcome: DeliveryOutcome) => Promise<void>;

/**
 * Where origins (trigger runs, flow executions) learn how their deliveries ended. Handlers run
 * inside the transaction that changes the delivery's state, so "delivery succeeded" and "the
 * flow moved on" commit together or not at all.
 */
@Injectable()
export class DeliveryOutcomes {
  private readonly handlers = new Map<OriginType, OutcomeHandler>();

  register(originType: OriginType, handler: OutcomeHandler): void {
    if (this.handlers.has(originType)) throw new Error(`an outcome handler for ${originType} is already registered`);
    this.handlers.set(originType, handler);
  }

  async report(em: EntityManager, outcome: DeliveryOutcome): Promise<void> {
    await this.handlers.get(outcome.origin.type)?.(em, outcome);
  }
}
