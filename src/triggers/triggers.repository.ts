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

/**
 * Due triggers, locked for this transaction; other replicas skip them rather than wait, so N
 * replicas split a busy second between them. `enabled and next_run_at is not null` repeats the
 * predicate of the partial index `cron_triggers_due`, so the plan reads only the head of that
 * index, whatever the number of stored triggers. Parameters: now, ids to leave out (a uuid[]
 * literal, usually `{}`), limit. Exported for the `cron` bench, which EXPLAINs exactly this text.
 */
export const CLAIM_DUE_SQL = `select id, tenant_id, application_id, name, cron_expression, timezone, run_key, backend_id, flow_id,
       misfire_policy, next_run_at
  from cron_triggers
 where enabled and next_run_at is not null and next_run_at <= ? and not (id = any(?::uuid[]))
 order by next_run_at
 limit ?
 for update skip locked`;

/** Due-but-unfired triggers (a range of the same index). Parameter: now. */
export const COUNT_DUE_SQL = `select count(*) as due from cron_triggers where enabled and next_run_at is not null and next_run_at <= ?`;

/** The scheduler's SQL: claim the due head of the index, record a slot once, move on. */
@Injectable()
export class TriggersRepository {
  /** `excluded`: triggers this replica leaves alone for now (they failed to fire). */
  async claimDue(
    em: EntityManager,
    now: Date,
    limit: number,
    excluded: readonly string[] = [],
  ): Promise<DueTriggerRow[]> {
    return em.execute<DueTriggerRow[]>(CLAIM_DUE_SQL, [now, pgArray(excluded), limit]);
  }

  /**
   * Inserts the runs with one statement and returns the ids of those inserted: a run whose slot
   * already fired is left out (the unique index is the exactly-once guarantee). Rows go in the
   * order given, so a fire_all catch-up is recorded oldest first.
   */
  async insertRuns(em: EntityManager, runs: readonly NewRun[]): Promise<string[]> {
    if (runs.length === 0) return [];
    const rows = await em.execute<{ id: string }[]>(
      `insert into trigger_runs (id, tenant_id, trigger_id, scheduled_for, fired_at, manual, routing, execution_id,
                                 created_at)
       select r.id, r.tenant_id, r.trigger_id, r.scheduled_for, r.fired_at, r.manual, r.routing, r.execution_id,
              r.fired_at
         from unnest(?::uuid[], ?::uuid[], ?::uuid[], ?::timestamptz[], ?::timestamptz[], ?::boolean[], ?::text[],
                     ?::uuid[])
              with ordinality as r(id, tenant_id, trigger_id, scheduled_for, fired_at, manual, routing, execution_id, n)
        order by r.n
       on conflict (trigger_id, scheduled_for) where not manual do nothing
       returning id`,
      [
        pgArray(runs.map((run) => run.id)),
        pgArray(runs.map((run) => run.tenantId)),
        pgArray(runs.map((run) => run.triggerId)),
        pgArray(runs.map((run) => run.scheduledFor.toISOString())),
        pgArray(runs.map((run) => run.firedAt.toISOString())),
        pgArray(runs.map((run) => String(run.manual))),
        pgArray(runs.map((run) => run.routing)),
        pgArray(runs.map((run) => run.executionId)),
      ],
    );
    return rows.map((row) => row.id);
  }

  async setExecution(em: EntityManager, runId: string, executionId: string): Promise<void> {
    await em.execute(`update trigger_runs set execution_id = ? where id = ?`, [executionId, runId]);
  }

  /** Stores each trigger's next run (null: none, the schedule is over or unusable), in one statement. */
  async advance(em: EntityManager, next: readonly { triggerId: string; nextRunAt: Date | null }[]): Promise<void> {
    if (next.length === 0) return;
    await em.execute(
      `update cron_triggers c
          set next_run_at = v.next_run_at, updated_at = now()
         from unnest(?::uuid[], ?::timestamptz[]) as v(id, next_run_at)
        where c.id = v.id`,
      [pgArray(next.map((n) => n.triggerId)), pgArray(next.map((n) => n.nextRunAt?.toISOString() ?? null))],
    );
  }

  /** Due-but-unfired triggers, for the metric of the same name. */
  async countDue(em: EntityManager, now: Date): Promise<number> {
    const rows = await em.execute<{ due: string }[]>(COUNT_DUE_SQL, [now]);
    return Number(rows[0]?.due ?? 0);
  }
}

/**
 * A PostgreSQL array literal (`{a,b,NULL}`) for one `?::type[]` parameter. Only for values that
 * need no quoting: UUIDs, ISO timestamps, booleans and the routing words.
 */
function pgArray(values: readonly (string | null)[]): string {
  return `{${values.map((value) => value ?? 'NULL').join(',')}}`;
}
