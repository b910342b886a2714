import { Injectable } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import type { DeliveryStatus } from './delivery.types.js';

export interface DeliverySummary {
  id: string;
  backendId: string | null;
  status: DeliveryStatus;
  attempts: number;
}

/** For origins (trigger runs, executions) that show their deliveries' progress. */
@Injectable()
export class DeliveryOriginsService {
  constructor(private readonly em: EntityManager) {}

  async deliveriesOf(tenantId: string, originIds: string[]): Promise<Map<string, DeliverySummary[]>> {
    const byOrigin = new Map<string, DeliverySummary[]>(originIds.map((id) => [id, []]));
    if (originIds.length === 0) return byOrigin;
    const rows = await this.em
      .fork()
      .execute<
        { id: string; origin_id: string; backend_id: string | null; status: DeliveryStatus; attempts: number }[]
      >(
        `select id, origin_id, backend_id, status, attempts from deliveries
        where tenant_id = ? and origin_id = any(?::uuid[])
        order by created_at, id`,
        [tenantId, `{${originIds.join(',')}}`],
      );
    for (const row of rows) {
      byOrigin.get(row.origin_id)?.push({
        id: row.id,
        backendId: row.backend_id,
        status: row.status,
        attempts: row.attempts,
      });
    }
    return byOrigin;
  }
}
