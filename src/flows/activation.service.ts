import { Injectable } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import type { MachinePrincipal } from '../auth/principal.js';
import { TokenVerifier } from '../auth/token-verifier.js';
import { DomainException } from '../common/errors.js';
import { GroupCommit } from '../common/group-commit.js';
import { AllExceptionsFilter } from '../common/exception.filter.js';
import { isUuid } from '../common/uuid-param.pipe.js';
import { type ApplicationContext, TenancyService } from '../tenancy/tenancy.service.js';
import { ExecutionEngine } from './execution-engine.js';
import { type CompiledCallback, type CompiledVersion, FlowCatalog } from './flow-catalog.js';
import type { Flow } from './flows.entities.js';
import { FlowMetrics } from './flows.metrics.js';
import { type ExecutionRow, FlowsRepository, type NewEvent } from './flows.repository.js';
import { FlowsService } from './flows.service.js';
import { isTruthy, JqRuntimeError } from './jq-expression.js';

export const ACTIVATION_BODY_LIMIT = 1024 * 1024;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;
/**
 * How many waiting executions `any` with a condition or a key reads (without a lock) at a time. A
 * condition that correlates (`.data.orderId == .execution.trigger.data.orderId`) finds its one
 * execution among a page in memory instead of locking candidates one by one; without a condition
 * any candidate will do, and a few spare ones let a call pass over those others hold.
 */
const ANY_PAGE = { condition: 50, none: 5 };
/** Most plain `any` calls one group-commit statement serves (see resumeAnyTogether). */
const ANY_GROUP_MAX = 100;

export interface ActivationRequest {
  method: 'GET' | 'POST';
  flowId: string;
  triggerId: string;
  query: Record<string, string | string[] | undefined>;
  body: unknown;
  bodyBytes: number;
  headers: Record<string, string | string[] | undefined>;
  baseUrl: string;
}

export interface ActivationAnswer {
  statusCode: number;
  headers: Record<string, string>;
  body: string | null;
}

interface Located {
  flow: Flow;
  compiled: CompiledVersion;
  step: CompiledCallback;
  flowStarting: boolean;
}

/**
 * What an activation reads besides its own rows, read before its transaction opens. Read inside
 * it, each took a second pooled connection while the transaction held one: with more concurrent
 * activations than DATABASE_POOL_SIZE, every connection was held by a transaction waiting for
 * another and the replica hung for good (bench/scenarios/activation.ts: flow starts over 64
 * connections, pool of 10). The auth result is still applied at its place in the order of checks.
 */
interface Preloaded {
  auth: { user: unknown; refused?: 'CALLBACK_AUTH_FAILED' | 'MISSING_ROLE' };
  application: ApplicationContext | null;
}

/** An admitted caller (auth, size and schema passed): what its activation writes into the step. */
interface Caller {
  data: unknown;
  user: unknown;
}

/** An `execution=any` call waiting for its group's transaction. */
interface AnyCall {
  located: Located;
  caller: Caller;
}

const errors = new AllExceptionsFilter();

/**
 * Activation of callback steps (SPEC §4), checked in the contract's order: trigger → idempotency
 * key → execution named → auth → size → schema → execution exists and waits here → condition →
 * claim. The activation, its history and its idempotency record commit together (one transaction,
 * or one statement) before the answer; the steps after it run in the background (FlowWorker).
 */
@Injectable()
export class ActivationService {
  constructor(
    private readonly em: EntityManager,
    private readonly catalog: FlowCatalog,
    private readonly repository: FlowsRepository,
    private readonly engine: ExecutionEngine,
    private readonly flows: FlowsService,
    private readonly tenancy: TenancyService,
    private readonly tokens: TokenVerifier,
    private readonly metrics: FlowMetrics,
  ) {}

  private readonly anyGroups = new GroupCommit<AnyCall, ActivationAnswer>(
    (calls) => this.resumeAnyTogether(calls),
    ANY_GROUP_MAX,
  );

  async activate(request: ActivationRequest): Promise<ActivationAnswer> {
    let located: Located;
    let key: string | null;
    let executionParam: string | undefined;
    try {
      located = await this.locate(request.flowId, request.triggerId);
      key = idempotencyKey(request.headers['idempotency-key']);
      executionParam = located.flowStarting ? undefined : executionOf(request.query);
      if (!located.flowStarting && executionParam === undefined) {
        throw new DomainException(
          'EXECUTION_REQUIRED',
          'This step is mid-flow: say which execution resumes with ?execution=<id>, any or all',
        );
      }
    } catch (error) {
      return this.answerError(error);
    }
    const preloaded: Preloaded = {
      auth: await this.authenticate(located, request.headers),
      application: located.flowStarting
        ? await this.tenancy.applicationContext(located.flow.tenantId, located.flow.applicationId)
        : null,
    };
    const answer = key
      ? await this.em.fork().transactional(async (em) => {
          const stored = await this.claimIdempotencyKey(em, located.flow.tenantId, request.triggerId, key);
          if (stored) return stored;
          const result = await this.answer(em, request, located, preloaded, executionParam);
          await this.storeIdempotentAnswer(em, request.triggerId, key, result);
          return result;
        })
      : await this.answer(null, request, located, preloaded, executionParam);
    this.metrics.activations.inc({ outcome: answer.headers['x-activation'] ?? `http_${answer.statusCode}` });
    return answer;
  }

  /**
   * Admits the caller, then starts or resumes. `em` is the Idempotency-Key's transaction, which
   * everything joins; without a key a flow start or a refusal is one autocommitted statement, a
   * resume its own transaction, and a plain `any` call joins a group commit (resumeAnyTogether).
   * Only the contract's answers (DomainException) are answers; a database failure propagates and
   * rolls back whatever it was part of (the idempotency claim included), so the caller may retry.
   */
  private async answer(
    em: EntityManager | null,
    request: ActivationRequest,
    located: Located,
    preloaded: Preloaded,
    executionParam: string | undefined,
  ): Promise<ActivationAnswer> {
    const events: NewEvent[] = [];
    let result: ActivationAnswer;
    try {
      const caller = this.admit(request, located, preloaded.auth, executionParam, events);
      if (!caller) result = ignored();
      else if (located.flowStarting)
        result = await this.startFlow(em, request, located, preloaded.application, caller, events);
      else if (executionParam === 'any' && em === null && located.step.conditions.length === 0)
        return await this.anyGroups.submit(groupKey(located), { located, caller });
      else return await this.resume(em, request, located, executionParam!, caller);
    } catch (error) {
      if (!(error instanceof DomainException)) throw error;
      result = this.refusal(error, located, executionParam, events);
    }
    await this.repository.write(em ?? this.em.fork(), { events });
    return result;
  }

  /** Auth, size and schema, in the contract's order; null: ignored (auth onFail IGNORE). */
  private admit(
    request: ActivationRequest,
    located: Located,
    auth: Preloaded['auth'],
    executionParam: string | undefined,
    events: NewEvent[],
  ): Caller | null {
    if (auth.refused) {
      events.push(
        this.triggerEvent(located, 'activation_refused', { reason: auth.refused, execution: executionParam ?? null }),
      );
      if (located.step.definition.auth?.onFail === 'IGNORE') return null;
      if (auth.refused === 'MISSING_ROLE') {
        throw new DomainException(
          'MISSING_ROLE',
          'Unable to execute the callback. User is missing required security role(s)',
        );
      }
      throw new DomainException(
        'CALLBACK_AUTH_FAILED',
        'Unable to execute the callback. Missing or invalid machine-user token',
      );
    }
    if (request.method === 'POST' && request.bodyBytes > ACTIVATION_BODY_LIMIT) {
      throw new DomainException('PAYLOAD_TOO_LARGE', 'Request body is larger than 1 MiB');
    }
    const data = activationData(request, located.flowStarting);
    const validate = located.step.validate;
    if (validate && !validate(data)) {
      const problems = (validate.errors ?? []).map((error) => ({
        path: error.instancePath || '/',
        message: error.message ?? 'is invalid',
      }));
      throw new DomainException(
        'INVALID_PAYLOAD',
        `The data does not match the step's schema: ${problems.map((p) => `${p.path} ${p.message}`).join('; ')}`,
        { errors: problems },
      );
    }
    return { data, user: auth.user };
  }

  /**
   * A mid-flow activation in one transaction (the key's, or its own): lock, condition, resume, and
   * one statement writing the resumed rows, the history and the NOTIFY. A refusal after the lock
   * (not waiting, none waiting) has written nothing, so it needs no savepoint: its history is
   * written instead and the transaction commits.
   */
  private resume(
    em: EntityManager | null,
    request: ActivationRequest,
    located: Located,
    executionParam: string,
    caller: Caller,
  ): Promise<ActivationAnswer> {
    const work = async (tx: EntityManager) => {
      const events: NewEvent[] = [];
      const resumed: ExecutionRow[] = [];
      let result: ActivationAnswer;
      try {
        if (executionParam === 'any') result = await this.resumeAny(tx, located, caller, events, resumed);
        else if (executionParam === 'all') result = await this.resumeAll(tx, request, located, caller, events, resumed);
        else result = await this.resumeById(tx, located, executionParam, caller, events, resumed);
      } catch (error) {
        if (!(error instanceof DomainException)) throw error;
        result = this.refusal(error, located, executionParam, events);
      }
      await this.repository.write(tx, { saved: resumed, events, notify: resumed.length > 0 });
      return result;
    };
    return em ? work(em) : this.em.fork().transactional(work);
  }

  /**
   * Group commit for `execution=any` without a condition or an Idempotency-Key (the others take
   * resume's path): the plain calls for one trigger made while the previous group's statement ran
   * are served together by one autocommitted statement (FlowsRepository.resumeWaiting) that locks
   * as many waiting executions as there are calls (oldest first, SKIP LOCKED, so never one it does
   * not resume), resumes one per call with that call's data and user, as ExecutionEngine.resume
   * would, and writes their history, the refusals of the calls left without one
   * (NO_WAITING_EXECUTION) and the NOTIFY. A database error fails the whole group; nothing commits.
   */
  private async resumeAnyTogether(calls: AnyCall[]): Promise<ActivationAnswer[]> {
    const { located } = calls[0];
    const resumption = this.engine.waitingResumption(located.step, { by: 'any' });
    const resumed = await this.repository.resumeWaiting(
      this.em.fork(),
      located.step.definition.triggerId,
      resumption,
      calls.map(({ caller }) => resumption.output(caller.data, caller.user)),
      this.triggerEvent(located, 'activation_refused', { code: 'NO_WAITING_EXECUTION', execution: 'any' }),
    );
    const none = resumed.length < calls.length ? this.answerError(noneWaiting()) : null;
    return calls.map((_, index) => (index < resumed.length ? activated(resumed[index]) : none!));
  }

  /** The answer to a refusal; a refusal that reached no execution is in the trigger's history. */
  private refusal(
    error: DomainException,
    located: Located,
    executionParam: string | undefined,
    events: NewEvent[],
  ): ActivationAnswer {
    const result = this.answerError(error);
    if (events.length === 0)
      events.push(
        this.triggerEvent(located, 'activation_refused', {
          code: error.code,
          execution: executionParam ?? null,
        }),
      );
    return result;
  }

  private async startFlow(
    em: EntityManager | null,
    request: ActivationRequest,
    located: Located,
    application: ApplicationContext | null,
    caller: Caller,
    events: NewEvent[],
  ): Promise<ActivationAnswer> {
    const { data, user } = caller;
    let holds: boolean;
    try {
      holds = this.conditionHolds(located.step, { data, user, execution: null });
    } catch (error) {
      // The caller's data broke the expression (`.data.x` of a string): it does not hold, as mid-flow.
      if (!(error instanceof JqRuntimeError)) throw error;
      events.push(this.triggerEvent(located, 'activation_ignored', { reason: `condition failed: ${error.message}` }));
      return ignored();
    }
    if (!holds) {
      events.push(this.triggerEvent(located, 'activation_ignored', { reason: 'condition false' }));
      return ignored();
    }
    if (!application) throw new DomainException('TRIGGER_NOT_FOUND', 'No such trigger');
    // One statement (execution, history, NOTIFY): without a key's transaction it needs none.
    const executionId = await this.engine.start(em ?? this.em.fork(), {
      flow: located.flow,
      compiled: located.compiled,
      application,
      trigger: { type: 'callback', data, user },
      baseUrl: this.flows.baseUrl(located.flow, request.baseUrl),
    });
    return activated(executionId);
  }

  private async resumeById(
    em: EntityManager,
    located: Located,
    id: string,
    caller: Caller,
    events: NewEvent[],
    resumed: ExecutionRow[],
  ): Promise<ActivationAnswer> {
    const row = isUuid(id) ? await this.repository.lockById(em, located.flow.tenantId, id.toLowerCase()) : null;
    if (!row || row.flow_id !== located.flow.id)
      throw new DomainException('EXECUTION_NOT_FOUND', `No execution ${id} of this flow`);
    if (row.status !== 'waiting' || row.waiting_trigger_id !== located.step.definition.triggerId) {
      events.push(
        this.engine.event(row, 'activation_refused', located.step.definition.name, {
          reason: 'not waiting here',
          status: row.status,
        }),
      );
      throw new DomainException(
        'EXECUTION_NOT_WAITING',
        `Execution ${row.id} is ${row.status}, not waiting at "${located.step.definition.name}"`,
      );
    }
    if (!this.resumeIfCondition(row, located.step, caller, events, 'id')) return ignored();
    resumed.push(row);
    return activated(row.id);
  }

  /**
   * `any` with a condition, or under an Idempotency-Key. Candidates are read without a lock and
   * their condition evaluated on what they hold while they wait (a waiting execution's context does
   * not change); only one that passes is locked, if it still waits: one no other call holds first,
   * else the first of them, waiting for its holder, which may yet leave it waiting (its own
   * condition false). This call holds no other execution while it waits, so it cannot deadlock,
   * and a row another call holds is never taken for "none waits". If executions wait but none
   * passes, the answer is the ignored 200; if none waits (or every passing one went to other
   * calls meanwhile and none failed), NO_WAITING_EXECUTION.
   */
  private async resumeAny(
    em: EntityManager,
    located: Located,
    caller: Caller,
    events: NewEvent[],
    resumed: ExecutionRow[],
  ): Promise<ActivationAnswer> {
    const { triggerId } = located.step.definition;
    const page = located.step.conditions.length > 0 ? ANY_PAGE.condition : ANY_PAGE.none;
    const done: string[] = [];
    let refused = 0;
    for (;;) {
      const candidates = await this.repository.waitingAt(em, triggerId, page, done);
      if (candidates.length === 0) {
        if (refused === 0) throw noneWaiting();
        return ignored();
      }
      const passing: ExecutionRow[] = [];
      for (const row of candidates) {
        if (this.passesCondition(row, located.step, caller, events, 'any')) passing.push(row);
        else {
          done.push(row.id);
          refused++;
        }
      }
      for (const row of passing) {
        const locked = await this.repository.lockIfWaiting(em, row.id, triggerId, { wait: false });
        if (locked) return this.resumeLocked(locked, located, caller, events, resumed);
      }
      if (passing.length === 0) continue;
      const locked = await this.repository.lockIfWaiting(em, passing[0].id, triggerId, { wait: true });
      if (locked) return this.resumeLocked(locked, located, caller, events, resumed);
      done.push(passing[0].id);
    }
  }

  private resumeLocked(
    row: ExecutionRow,
    located: Located,
    caller: Caller,
    events: NewEvent[],
    resumed: ExecutionRow[],
  ): ActivationAnswer {
    this.engine.resume(row, located.step, caller.data, caller.user, events, { by: 'any' });
    resumed.push(row);
    return activated(row.id);
  }

  private async resumeAll(
    em: EntityManager,
    request: ActivationRequest,
    located: Located,
    caller: Caller,
    events: NewEvent[],
    resumed: ExecutionRow[],
  ): Promise<ActivationAnswer> {
    const rows = await this.repository.lockWaitingAll(em, located.step.definition.triggerId);
    if (rows.length === 0) throw noneWaiting();
    resumed.push(...rows.filter((row) => this.resumeIfCondition(row, located.step, caller, events, 'all')));
    if (resumed.length === 0) return ignored();
    const ids = resumed.map((row) => row.id);
    const wantsJson = String(request.headers.accept ?? '').includes('application/json');
    return {
      statusCode: 200,
      headers: {
        'x-activation': 'activated',
        'content-type': wantsJson ? 'application/json; charset=utf-8' : 'text/plain; charset=utf-8',
      },
      body: wantsJson ? JSON.stringify({ executions: ids }) : ids.join(','),
    };
  }

  /** Evaluates the condition for one (locked) execution and resumes it if it holds; both are history. */
  private resumeIfCondition(
    row: ExecutionRow,
    step: CompiledCallback,
    caller: Caller,
    events: NewEvent[],
    by: string,
  ): boolean {
    if (!this.passesCondition(row, step, caller, events, by)) return false;
    this.engine.resume(row, step, caller.data, caller.user, events, { by });
    return true;
  }

  /** Whether the condition holds for the execution; a call it ignores is in the execution's history. */
  private passesCondition(
    row: ExecutionRow,
    step: CompiledCallback,
    caller: Caller,
    events: NewEvent[],
    by: string,
  ): boolean {
    const { data, user } = caller;
    let holds: boolean;
    try {
      holds = this.conditionHolds(step, { data, user, execution: row.context });
    } catch (error) {
      if (!(error instanceof JqRuntimeError)) throw error;
      events.push(
        this.engine.event(row, 'activation_ignored', step.definition.name, {
          reason: `condition failed: ${error.message}`,
          by,
        }),
      );
      return false;
    }
    if (!holds) {
      events.push(
        this.engine.event(row, 'activation_ignored', step.definition.name, { reason: 'condition false', by }),
      );
      return false;
    }
    return true;
  }

  private conditionHolds(step: CompiledCallback, input: unknown): boolean {
    if (step.conditions.length === 0) return true;
    const results = step.conditions.map((condition) => isTruthy(condition.evaluate(input)));
    return step.definition.condition?.combinator === 'or' ? results.some(Boolean) : results.every(Boolean);
  }

  private async authenticate(located: Located, headers: ActivationRequest['headers']): Promise<Preloaded['auth']> {
    const auth = located.step.definition.auth;
    if (!auth || auth.type === 'NONE') return { user: null };
    const token = bearer(headers.authorization) ?? header(headers['user-token']);
    const principal: MachinePrincipal | null = token ? await this.tokens.verifyMachineToken(token) : null;
    if (!principal || principal.tenantId !== located.flow.tenantId)
      return { user: null, refused: 'CALLBACK_AUTH_FAILED' };
    const user = {
      id: principal.machineUserId,
      username: principal.username,
      name: principal.name,
      roles: [...principal.roles],
    };
    if ((auth.requiredRoles ?? []).some((role) => !principal.hasRole(role))) return { user, refused: 'MISSING_ROLE' };
    return { user };
  }

  private async locate(flowId: string, triggerId: string): Promise<Located> {
    const notFound = () => new DomainException('TRIGGER_NOT_FOUND', 'No such flow trigger');
    if (!isUuid(flowId) || !isUuid(triggerId)) throw notFound();
    const current = await this.catalog.current(null, flowId.toLowerCase());
    if (!current) throw notFound();
    const id = triggerId.toLowerCase();
    const index = current.compiled.steps.findIndex(
      (step) => step.type === 'callback' && step.definition.triggerId === id,
    );
    if (index >= 0) {
      return {
        flow: current.flow,
        compiled: current.compiled,
        step: current.compiled.steps[index] as CompiledCallback,
        flowStarting: index === 0,
      };
    }
    // A step removed by a newer version still resumes the executions pinned to an older one.
    const version = await this.catalog.versionWithTrigger(current.flow.id, id);
    const compiled = version === null ? null : await this.catalog.version(current.flow.id, version);
    const step = compiled?.steps.find(
      (candidate) => candidate.type === 'callback' && candidate.definition.triggerId === id,
    );
    if (!compiled || !step) throw notFound();
    return { flow: current.flow, compiled, step: step as CompiledCallback, flowStarting: false };
  }

  /** Null: this request owns the key now. Otherwise the first request's answer, replayed. */
  private async claimIdempotencyKey(
    em: EntityManager,
    tenantId: string,
    triggerId: string,
    key: string,
  ): Promise<ActivationAnswer | null> {
    // A concurrent first request holds the row until it commits; this insert waits for it.
    const claimed = await em.execute<{ key: string }[]>(
      `insert into activation_idempotency (tenant_id, trigger_id, key, created_at, expires_at)
       values (?, ?, ?, now(), now() + interval '24 hours')
       on conflict (trigger_id, key) do update
         set created_at = now(), expires_at = now() + interval '24 hours', status_code = null, headers = null, body = null
         where activation_idempotency.expires_at <= now()
       returning key`,
      [tenantId, triggerId, key],
    );
    if (claimed.length === 1) return null;
    const [stored] = await em.execute<{ status_code: number; headers: Record<string, string>; body: string | null }[]>(
      `select status_code, headers, body from activation_idempotency where trigger_id = ? and key = ?`,
      [triggerId, key],
    );
    return {
      statusCode: stored.status_code,
      headers: { ...stored.headers, 'idempotent-replayed': 'true' },
      body: stored.body,
    };
  }

  private async storeIdempotentAnswer(
    em: EntityManager,
    triggerId: string,
    key: string,
    answer: ActivationAnswer,
  ): Promise<void> {
    await em.execute(
      `update activation_idempotency set status_code = ?, headers = ?::jsonb, body = ? where trigger_id = ? and key = ?`,
      [answer.statusCode, JSON.stringify(answer.headers), answer.body, triggerId, key],
    );
  }

  private answerError(error: unknown): ActivationAnswer {
    const { body, headers } = errors.toErrorBody(error);
    return {
      statusCode: body.statusCode,
      headers: { ...headers, 'content-type': 'application/json; charset=utf-8' },
      body: JSON.stringify(body),
    };
  }

  private triggerEvent(located: Located, type: string, detail: Record<string, unknown>): NewEvent {
    return {
      tenantId: located.flow.tenantId,
      flowId: located.flow.id,
      executionId: null,
      triggerId: located.step.definition.triggerId,
      type,
      step: located.step.definition.name,
      detail,
    };
  }
}

/** `any` calls share a group commit when they resume the same step of the same flow version. */
function groupKey(located: Located): string {
  return `${located.flow.id}:${located.compiled.version}:${located.step.definition.triggerId}`;
}

function noneWaiting(): DomainException {
  return new DomainException('NO_WAITING_EXECUTION', 'No execution is waiting at this step');
}

function activated(executionId: string): ActivationAnswer {
  return { statusCode: 200, headers: { 'x-execution-id': executionId, 'x-activation': 'activated' }, body: null };
}

function ignored(): ActivationAnswer {
  return { statusCode: 200, headers: { 'x-activation': 'ignored' }, body: null };
}

function header(value: string | string[] | undefined): string | null {
  const first = Array.isArray(value) ? value[0] : value;
  return first && first.length > 0 ? first : null;
}

function bearer(value: string | string[] | undefined): string | null {
  const match = /^Bearer\s+(\S+)$/i.exec(header(value) ?? '');
  return match ? match[1] : null;
}

/** `execution` wins over `executionId`; values are case-sensitive (`ANY` is an id). */
function executionOf(query: ActivationRequest['query']): string | undefined {
  const value = query.execution ?? query.executionId;
  return Array.isArray(value) ? value[0] : value;
}

function idempotencyKey(value: string | string[] | undefined): string | null {
  if (value === undefined) return null;
  const key = Array.isArray(value) ? value[0] : value;
  if (!IDEMPOTENCY_KEY.test(key)) {
    throw DomainException.field('Idempotency-Key', 'must be 1–255 visible ASCII characters');
  }
  return key;
}

/** GET: the query parameters (minus execution/executionId mid-flow); POST: the JSON body, `{}` when empty. */
function activationData(request: ActivationRequest, flowStarting: boolean): unknown {
  if (request.method === 'POST') return request.body === undefined ? {} : request.body;
  const data: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(request.query)) {
    if (value === undefined) continue;
    if (!flowStarting && (name === 'execution' || name === 'executionId')) continue;
    data[name] = value;
  }
  return data;
}
