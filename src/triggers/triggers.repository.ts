import { Injectable } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import type { MisfirePolicy, RunRouting } from './triggers.entities.js';

export interface DueTriggerRow {
  id: string;
  tenant_id: string;
  application_id: string;
  name: string;
  cron_expression: string;
  timezone: string;
  run_key: string;
  backend_id: string | null;
  flow_id: string | null;
  misfire_policy: MisfirePolicy;
  /** Raw rows carry timestamps as text (MikroORM leaves type parsing to its hydration). */
  next_run_at: string;
}

export interface NewRun {
  id: string;
  tenantId: string;
  triggerId: string;
  scheduledFor: Date;
  firedAt: Date;
  manual: boolean;
  routing: RunRouting;
  executionId: string | null;
}

/** The scheduler's SQL: claim the due head of the index, record a slot once, move on. */
@Injectable()
export class TriggersRepository {
  /**
   * Due triggers, locked for this transaction; other replicas skip them rather than wait, so
   * N replicas split a busy second between them. Reads only the head of `cron_triggers_due`.
   */
  async claimDue(em: EntityManager, now: Date, limit: number): Promise<DueTriggerRow[]> {
    return em.execute<DueTriggerRow[]>(
      `select id, tenant_id, application_id, name, cron_expression, timezone, run_key, backend_id, flow_id,
              misfire_policy, next_run_at
         from cron_triggers
        where enabled and next_run_at is not null and next_run_at <= ?
        order by next_run_at
        limit ?
        for update skip locked`,
      [now, limit],
    );
  }

  /** False when the slot already fired (the unique index is the exactly-once guarantee). */
  async insertRun(em: EntityManager, run: NewRun): Promise<boolean> {
    const rows = await em.execute<{ id: string }[]>(
      `insert into trigger_runs (id, tenant_id, trigger_id, scheduled_for, fired_at, manual, routing, execution_id,
                                 created_at)
       values (?, ?, ?, ?, ?, ?, ?, ?, ?)
       on conflict (trigger_id, scheduled_for) where not manual do nothing
       returning id`,
      [
        run.id,
        run.tenantId,
        run.triggerId,
        run.scheduledFor,
        run.firedAt,
        run.manual,
        run.routing,
        run.executionId,
        run.firedAt,
      ],
    );
    return rows.length === 1;
  }

  async setExecution(em: EntityManager, runId: string, executionId: string): Promise<void> {
    await em.execute(`update trigger_runs set execution_id = ? where id = ?`, [executionId, runId]);
  }

  async advance(em: EntityManager, triggerId: string, nextRunAt: Date | null): Promise<void> {
    await em.execute(`update cron_triggers set next_run_at = ?, updated_at = now() where id = ?`, [
      nextRunAt,
      triggerId,
    ]);
  }

  /** Due-but-unfired triggers, for the metric of the same name. */
  async countDue(em: EntityManager, now: Date): Promise<number> {
    const rows = await em.execute<{ due: string }[]>(
      `select count(*) as due from cron_triggers where enabled and next_run_at is not null and next_run_at <= ?`,
      [now],
    );
    return Number(rows[0]?.due ?? 0);
  }
}
