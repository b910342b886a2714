import { Injectable, type OnModuleInit } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import { RetentionRegistry } from '../maintenance/retention.registry.js';

/**
 * Finished executions with (by cascade) their history, attempts recorded against a trigger
 * only, and expired idempotency answers. Waiting and running executions are never purged.
 */
@Injectable()
export class FlowsRetention implements OnModuleInit {
  constructor(
    private readonly em: EntityManager,
    private readonly retention: RetentionRegistry,
  ) {}

  onModuleInit(): void {
    this.retention.register('executions', (cutoff, limit) =>
      this.deleteIds(
        `delete from executions where id in (
           select id from executions
            where finished_at is not null and finished_at < ? and status in ('completed', 'failed', 'cancelled')
            order by finished_at limit ?)
         returning id`,
        [cutoff, limit],
      ),
    );
    this.retention.register('flow_events', (cutoff, limit) =>
      this.deleteIds(
        `delete from flow_events where id in (
           select id from flow_events where execution_id is null and at < ? order by at limit ?)
         returning id`,
        [cutoff, limit],
      ),
    );
    this.retention.register('activation_idempotency', (_cutoff, limit) =>
      this.deleteIds(
        `delete from activation_idempotency where (trigger_id, key) in (
           select trigger_id, key from activation_idempotency where expires_at < now() order by expires_at limit ?)
         returning key as id`,
        [limit],
      ),
    );
  }

  private async deleteIds(sql: string, params: unknown[]): Promise<number> {
    return (await this.em.fork().execute<{ id: string }[]>(sql, params)).length;
  }
}
