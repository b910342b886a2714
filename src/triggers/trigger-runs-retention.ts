import { Injectable, type OnModuleInit } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import { RetentionRegistry } from '../maintenance/retention.registry.js';

/** Run history of cron triggers. */
@Injectable()
export class TriggerRunsRetention implements OnModuleInit {
  constructor(
    private readonly em: EntityManager,
    private readonly retention: RetentionRegistry,
  ) {}

  onModuleInit(): void {
    this.retention.register('trigger_runs', async (cutoff, limit) => {
      const rows = await this.em.fork().execute<{ id: string }[]>(
        `delete from trigger_runs where id in (
           select id from trigger_runs where created_at < ? order by created_at limit ?)
         returning id`,
        [cutoff, limit],
      );
      return rows.length;
    });
  }
}
