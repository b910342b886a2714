import { Injectable, type OnModuleInit } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import { RetentionRegistry } from '../maintenance/retention.registry.js';

/** Finished deliveries (SUCCEEDED, DEAD) and, by cascade, their attempts; never PENDING or PARKED. */
@Injectable()
export class DeliveryRetention implements OnModuleInit {
  constructor(
    private readonly em: EntityManager,
    private readonly retention: RetentionRegistry,
  ) {}

  onModuleInit(): void {
    this.retention.register('deliveries', async (cutoff, limit) => {
      const rows = await this.em.fork().execute<{ id: string }[]>(
        `delete from deliveries where id in (
           select id from deliveries
            where finished_at is not null and finished_at < ? and status in ('SUCCEEDED', 'DEAD')
            order by finished_at limit ?)
         returning id`,
        [cutoff, limit],
      );
      return rows.length;
    });
  }
}
