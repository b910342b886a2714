import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import type { ExecutionStatus } from './execution-state.js';
import type { ExecutionContext } from './flows.entities.js';

export const EXECUTION_CHANNEL = 'switchyard_executions';

/** An execution as the engine reads and writes it (raw row, timestamps as text). */
export interface ExecutionRow {
  id: string;
  tenant_id: string;
  flow_id: string;
  flow_version: number;
  status: ExecutionStatus;
  step_index: number | null;
  step_phase: 'delaying' | 'delivering' | null;
  run_at: string | Date | null;
  awaiting_delivery_id: string | null;
  waiting_trigger_id: string | null;
  waiting_since: string | Date | null;
  waiting_deadline: string | Date | null;
  context: ExecutionContext;
  created_at: string | Date;
  finished_at: string | Date | null;
}

export interface NewEvent {
  tenantId: string;
  flowId: string;
  executionId: string | null;
  triggerId?: string | null;
  type: string;
  step?: string | null;
  detail?: Record<string, unknown> | null;
  at?: Date;
}

const COLUMNS = `id, tenant_id, flow_id, flow_version, status, step_index, step_phase, run_at, awaiting_delivery_id,
  waiting_trigger_id, waiting_since, waiting_deadline, context, created_at, finished_at`;

/** The columns of an execution a write carries, as jsonb_to_recordset reads them from one JSON parameter. */
const ROW_RECORD = `id uuid, tenant_id uuid, flow_id uuid, flow_version integer, status text, step_index integer,
  step_phase text, run_at timestamptz, awaiting_delivery_id uuid, waiting_trigger_id uuid, waiting_since timestamptz,
  waiting_deadline timestamptz, context jsonb, created_at timestamptz, finished_at timestamptz`;

const INSERT_EXECUTIONS = `insert into executions (id, tenant_id, flow_id, flow_version, status, step_index, step_phase,
    run_at, awaiting_delivery_id, waiting_trigger_id, waiting_since, waiting_deadline, context, created_at, updated_at,
    finished_at)
  select id, tenant_id, flow_id, flow_version, status, step_index, step_phase, run_at, awaiting_delivery_id,
         waiting_trigger_id, waiting_since, waiting_deadline, context, created_at, now(), finished_at
    from jsonb_to_recordset(?::jsonb) as r(${ROW_RECORD})`;

/**
 * After its insert an execution's context changes only under `steps` (ExecutionEngine adds each
 * step's output there), so an update carries `steps`, not the whole context again (the trigger
 * data, the tenancy names and the callback URLs are most of it).
 */
const SAVE_EXECUTIONS = `update executions e
    set status = r.status, step_index = r.step_index, step_phase = r.step_phase, run_at = r.run_at,
        awaiting_delivery_id = r.awaiting_delivery_id, waiting_trigger_id = r.waiting_trigger_id,
        waiting_since = r.waiting_since, waiting_deadline = r.waiting_deadline,
        context = jsonb_set(e.context, '{steps}', r.steps), finished_at = r.finished_at, updated_at = now()
   from jsonb_to_recordset(?::jsonb) as r(id uuid, status text, step_index integer, step_phase text,
        run_at timestamptz, awaiting_delivery_id uuid, waiting_trigger_id uuid, waiting_since timestamptz,
        waiting_deadline timestamptz, steps jsonb, finished_at timestamptz)
  where e.id = r.id`;

/** History rows keep the order they were produced in (their `seq`): ordinality, then ORDER BY. */
const INSERT_EVENTS = `insert into flow_events (id, tenant_id, flow_id, execution_id, trigger_id, at, type, step, detail)
  select id, tenant_id, flow_id, execution_id, trigger_id, at, type, step, detail
    from rows from (jsonb_to_recordset(?::jsonb) as (id uuid, tenant_id uuid, flow_id uuid, execution_id uuid,
         trigger_id uuid, at timestamptz, type text, step text, detail jsonb)) with ordinality as v
   order by v.ordinality`;

/**
 * What ExecutionEngine.resume does to any execution waiting at one step, as values a statement can
 * apply to rows it has not read (resumeWaiting): the status it moves to, when it runs next, the
 * history event, and per caller the step's output.
 */
export interface WaitingResumption {
  status: ExecutionStatus;
  runAt: Date;
  step: string;
  event: { type: string; at: Date; detail: Record<string, unknown> };
}

/**
 * execution=any for many callers in one statement: lock as many executions waiting at the trigger
 * as there are outputs (oldest first, SKIP LOCKED), number them, resume the n-th with the n-th
 * output (ExecutionEngine.resume's changes: status, step_index + 1, steps.<step>, waiting cleared,
 * run_at), write their history and one refusal per output left without an execution, NOTIFY.
 */
const RESUME_WAITING = `with callers as (
    select c.output, c.ord
      from rows from (jsonb_to_recordset(?::jsonb) as (output jsonb)) with ordinality as c(output, ord)
  ),
  picked as (
    select id, row_number() over (order by waiting_since, id) as ord
      from (select id, waiting_since from executions
             where status = 'waiting' and waiting_trigger_id = ?
             order by waiting_since, id
             limit ?
             for no key update skip locked) locked
  ),
  resumed as (
    update executions e
       set status = ?, step_index = e.step_index + 1, context = jsonb_set(e.context, array['steps', ?], c.output),
           run_at = ?, waiting_trigger_id = null, waiting_since = null, waiting_deadline = null, updated_at = now()
      from picked p join callers c on c.ord = p.ord
     where e.id = p.id
     returning e.id, e.tenant_id, e.flow_id, p.ord
  ),
  history as (
    insert into flow_events (id, tenant_id, flow_id, execution_id, trigger_id, at, type, step, detail)
    select gen_random_uuid(), tenant_id, flow_id, id, null, ?, ?, ?, ?::jsonb from resumed order by ord
  ),
  refused as (
    insert into flow_events (id, tenant_id, flow_id, execution_id, trigger_id, at, type, step, detail)
    select gen_random_uuid(), ?, ?, null, ?, ?, ?, ?, ?::jsonb
      from callers where ord > (select count(*) from picked) order by ord
  )
  select id, pg_notify('${EXECUTION_CHANNEL}', '') from resumed order by ord`;

/** What one unit of engine work writes; `write` sends it as one statement. */
export interface ExecutionWrites {
  inserted?: ExecutionRow[];
  saved?: ExecutionRow[];
  events?: NewEvent[];
  /** Wake the flow workers (NOTIFY, sent at commit): an execution became runnable. */
  notify?: boolean;
}

/**
 * The flows engine's SQL: claims, the waiting-set queries of activation, and history.
 *
 * Executions are locked FOR NO KEY UPDATE, never FOR UPDATE: a transaction that wrote history for
 * an execution it did not lock (an `any` call that found its condition false) takes a KEY SHARE lock
 * on it at commit, for the deferred foreign key of `flow_events`. KEY SHARE conflicts with FOR
 * UPDATE only, so that commit never waits for whoever holds the execution, and two such commits
 * cannot deadlock on each other's rows.
 */
@Injectable()
export class FlowsRepository {
  /**
   * Inserts, updates, history and NOTIFY of one unit of work as one statement (data-modifying CTEs):
   * one round trip whatever the number of rows. Each part is one JSON parameter.
   */
  async write(em: EntityManager, writes: ExecutionWrites): Promise<void> {
    const parts: string[] = [];
    const params: string[] = [];
    const add = (sql: string, values: unknown[] | undefined) => {
      if (!values || values.length === 0) return;
      parts.push(`w${parts.length} as (${sql})`);
      params.push(JSON.stringify(values));
    };
    add(INSERT_EXECUTIONS, writes.inserted);
    add(SAVE_EXECUTIONS, writes.saved?.map(savedRecord));
    add(INSERT_EVENTS, writes.events?.map(eventRecord));
    if (parts.length === 0 && !writes.notify) return;
    const final = writes.notify ? `select pg_notify('${EXECUTION_CHANNEL}', '')` : 'select 1';
    await em.execute(parts.length === 0 ? final : `with ${parts.join(', ')} ${final}`, params);
  }

  /** Running executions whose next step is due, locked for this transaction (skipped by others). */
  async claimRunnable(em: EntityManager, now: Date, limit: number): Promise<ExecutionRow[]> {
    return em.execute<ExecutionRow[]>(
      `select ${COLUMNS} from executions
        where status = 'running' and run_at is not null and run_at <= ?
        order by run_at
        limit ?
        for no key update skip locked`,
      [now, limit],
    );
  }

  /** Waiting executions whose callback timeout has passed, locked for this transaction. */
  async claimTimedOut(em: EntityManager, now: Date, limit: number): Promise<ExecutionRow[]> {
    return em.execute<ExecutionRow[]>(
      `select ${COLUMNS} from executions
        where status = 'waiting' and waiting_deadline is not null and waiting_deadline <= ?
        order by waiting_deadline
        limit ?
        for no key update skip locked`,
      [now, limit],
    );
  }

  /**
   * RESUME_WAITING: one autocommitted statement for a group of `any` callers; the ids of the
   * executions resumed, in caller order (fewer than the outputs when fewer were free).
   */
  async resumeWaiting(
    em: EntityManager,
    triggerId: string,
    resumption: WaitingResumption,
    outputs: unknown[],
    refusal: NewEvent,
  ): Promise<string[]> {
    const rows = await em.execute<{ id: string }[]>(RESUME_WAITING, [
      JSON.stringify(outputs.map((output) => ({ output }))),
      triggerId,
      outputs.length,
      resumption.status,
      resumption.step,
      resumption.runAt,
      resumption.event.at,
      resumption.event.type,
      resumption.step,
      JSON.stringify(resumption.event.detail),
      refusal.tenantId,
      refusal.flowId,
      refusal.triggerId ?? null,
      refusal.at ?? resumption.event.at,
      refusal.type,
      refusal.step ?? null,
      JSON.stringify(refusal.detail ?? null),
    ]);
    return rows.map((row) => row.id);
  }

  /** Up to `limit` executions waiting at the trigger, oldest first, read without a lock. */
  async waitingAt(em: EntityManager, triggerId: string, limit: number, excluding: string[]): Promise<ExecutionRow[]> {
    return em.execute<ExecutionRow[]>(
      `select ${COLUMNS} from executions
        where status = 'waiting' and waiting_trigger_id = ? and not (id = any(?::uuid[]))
        order by waiting_since, id
        limit ?`,
      [triggerId, `{${excluding.join(',')}}`, limit],
    );
  }

  /**
   * The execution, locked, if it still waits at the trigger; else null and no lock. `wait: false`
   * skips it when another transaction holds it; `wait: true` waits for that one and re-checks.
   * Locking a row a concurrent activation updated (READ COMMITTED re-check) locks its newest
   * version even when the re-check then drops it, so the attempt runs under a savepoint that is
   * rolled back when no row comes back, which releases that lock.
   */
  async lockIfWaiting(
    em: EntityManager,
    id: string,
    triggerId: string,
    { wait }: { wait: boolean },
  ): Promise<ExecutionRow | null> {
    await em.execute('savepoint lock_if_waiting');
    const [row] = await em.execute<ExecutionRow[]>(
      `select ${COLUMNS} from executions
        where id = ? and status = 'waiting' and waiting_trigger_id = ?
        for no key update${wait ? '' : ' skip locked'}`,
      [id, triggerId],
    );
    if (!row) await em.execute('rollback to savepoint lock_if_waiting');
    await em.execute('release savepoint lock_if_waiting');
    return row ?? null;
  }

  /**
   * Every execution waiting at the trigger when the call arrives, locked, each still waiting.
   *
   * It must never hold the lock of an execution that is no longer waiting while it waits for
   * another row. Locking a row that a concurrent activation updated (READ COMMITTED re-check)
   * locks its newest version even when the re-check then drops it, and a delivery's outcome
   * transaction locks several running executions in turn: a plain blocking lock over the waiting
   * set deadlocked with it (test/flow-races.e2e-spec.ts). So: one SKIP LOCKED pass (never waits);
   * when it got every row of the set, done. Otherwise it releases them all and takes the rows one
   * by one in id order, waiting for each holder, each under a savepoint that is rolled back when
   * the row no longer waits here, which releases that lock. Held rows are then all waiting, taken
   * in id order, so concurrent `all` calls cannot deadlock either; a row a concurrent `any` or
   * by-id call holds is waited for and re-checked: resumed by that call or by this one, never both.
   */
  async lockWaitingAll(em: EntityManager, triggerId: string): Promise<ExecutionRow[]> {
    const ids = (
      await em.execute<{ id: string }[]>(
        `select id from executions where status = 'waiting' and waiting_trigger_id = ? order by id`,
        [triggerId],
      )
    ).map((row) => row.id);
    if (ids.length === 0) return [];
    await em.execute('savepoint lock_waiting_all');
    const free = await em.execute<ExecutionRow[]>(
      `select ${COLUMNS} from executions
        where id = any(?::uuid[]) and status = 'waiting' and waiting_trigger_id = ?
        order by id
        for no key update skip locked`,
      [`{${ids.join(',')}}`, triggerId],
    );
    if (free.length === ids.length) {
      await em.execute('release savepoint lock_waiting_all');
      return free;
    }
    await em.execute('rollback to savepoint lock_waiting_all');
    await em.execute('release savepoint lock_waiting_all');
    const locked: ExecutionRow[] = [];
    for (const id of ids) {
      const row = await this.lockIfWaiting(em, id, triggerId, { wait: true });
      if (row) locked.push(row);
    }
    return locked;
  }

  async lockById(em: EntityManager, tenantId: string, id: string): Promise<ExecutionRow | null> {
    const rows = await em.execute<ExecutionRow[]>(
      `select ${COLUMNS} from executions where id = ? and tenant_id = ? for no key update`,
      [id, tenantId],
    );
    return rows[0] ?? null;
  }

  async lockAwaitingDelivery(em: EntityManager, executionId: string, deliveryId: string): Promise<ExecutionRow | null> {
    const rows = await em.execute<ExecutionRow[]>(
      `select ${COLUMNS} from executions
        where id = ? and status = 'running' and awaiting_delivery_id = ?
        for no key update`,
      [executionId, deliveryId],
    );
    return rows[0] ?? null;
  }

  async waitingByFlow(em: EntityManager, limit: number): Promise<{ flow_id: string; waiting: string }[]> {
    return em.execute(
      `select flow_id, count(*) as waiting from executions where status = 'waiting'
        group by flow_id order by count(*) desc limit ?`,
      [limit],
    );
  }
}

/** What an update changes (SAVE_EXECUTIONS). */
function savedRecord(row: ExecutionRow) {
  return {
    id: row.id,
    status: row.status,
    step_index: row.step_index,
    step_phase: row.step_phase,
    run_at: row.run_at,
    awaiting_delivery_id: row.awaiting_delivery_id,
    waiting_trigger_id: row.waiting_trigger_id,
    waiting_since: row.waiting_since,
    waiting_deadline: row.waiting_deadline,
    steps: row.context.steps,
    finished_at: row.finished_at,
  };
}

function eventRecord(event: NewEvent) {
  return {
    id: randomUUID(),
    tenant_id: event.tenantId,
    flow_id: event.flowId,
    execution_id: event.executionId,
    trigger_id: event.triggerId ?? null,
    at: event.at ?? new Date(),
    type: event.type,
    step: event.step ?? null,
    detail: event.detail ?? null,
  };
}
