import type pg from 'pg';

export interface TriggerBatch {
  tenantId: string;
  applicationId: string;
  /** Names are `<prefix>-<n>`. */
  prefix: string;
  count: number;
  cron: string;
  runKey: string;
  /** Routed by backendId, round-robin over these; none: no backendId (routing by runKey). */
  backendIds: string[];
  /** SQL for next_run_at; default null (the caller makes them due later). */
  nextRunSql?: string;
}

/** `count` enabled UTC `fire_once` triggers with one statement: the fast way to a large schedule. */
export async function insertCronTriggers(db: pg.Client, batch: TriggerBatch): Promise<void> {
  await db.query(
    `insert into cron_triggers (id, tenant_id, application_id, name, cron_expression, timezone, run_key, enabled,
                                backend_id, flow_id, misfire_policy, next_run_at, created_at, updated_at)
     select gen_random_uuid(), $1, $2, $3 || '-' || i, $4, 'UTC', $5, true,
            case when cardinality($6::uuid[]) > 0 then ($6::uuid[])[1 + i % cardinality($6::uuid[])] end, null,
            'fire_once', ${batch.nextRunSql ?? 'null'}, now(), now()
       from generate_series(0, $7::int - 1) as i`,
    [batch.tenantId, batch.applicationId, batch.prefix, batch.cron, batch.runKey, batch.backendIds, batch.count],
  );
}

/**
 * The expression of one UTC second: that second's second, minute, hour, day and month. The
 * scheduler fires only an expression's own slots, so a trigger made due at that second fires once,
 * and its next run is a year away.
 */
export function onceAt(at: Date): string {
  return [at.getUTCSeconds(), at.getUTCMinutes(), at.getUTCHours(), at.getUTCDate(), at.getUTCMonth() + 1, '*'].join(
    ' ',
  );
}
