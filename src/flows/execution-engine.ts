import { randomUUID } from 'node:crypto';
import { Injectable, Logger, type OnModuleInit } from '@nestjs/common';
import type { EntityManager } from '@mikro-orm/postgresql';
import { Clock } from '../common/clock.js';
import { AppConfig } from '../config/app-config.js';
import { DeliveryOutcomes } from '../delivery/delivery-outcomes.js';
import { DeliveryService } from '../delivery/delivery.service.js';
import type { DeliveryOutcome } from '../delivery/delivery.types.js';
import type { ApplicationContext } from '../tenancy/tenancy.service.js';
import { type ExecutionEvent, transition } from './execution-state.js';
import type { CompiledCallback, CompiledVersion, CompiledWebhook } from './flow-catalog.js';
import { FlowCatalog } from './flow-catalog.js';
import type { ExecutionContext, Flow } from './flows.entities.js';
import { FlowMetrics } from './flows.metrics.js';
import { type ExecutionRow, FlowsRepository, type NewEvent, type WaitingResumption } from './flows.repository.js';
import { JqRuntimeError } from './jq-expression.js';

export interface StartInput {
  flow: Flow;
  compiled: CompiledVersion;
  application: ApplicationContext;
  trigger: { type: 'callback' | 'cron' | 'api'; data: unknown; user: unknown };
  /** Base of activation URLs for the `callbacks` map. */
  baseUrl: string;
  /** Extra history detail of the start (the activation that caused it, say). */
  detail?: Record<string, unknown>;
}

type StepOutput = ExecutionContext['steps'][string];

/** What a callback step stores as its output when an activation (or the start) passes it. */
function stepOutput(data: unknown, user: unknown, at: Date): StepOutput {
  return { data, user, at: at.toISOString() };
}

export function activationUrl(baseUrl: string, flowId: string, triggerId: string): string {
  return `${baseUrl}/api/automation/flow/${flowId}/trigger/${triggerId}/activate`;
}

/**
 * Moves executions through their steps, always inside the caller's transaction with the
 * execution row locked: a replica that dies mid-step rolls back and another one redoes the step.
 * Every status change goes through the transition table and lands in the history.
 */
@Injectable()
export class ExecutionEngine implements OnModuleInit {
  private readonly logger = new Logger(ExecutionEngine.name);

  constructor(
    private readonly repository: FlowsRepository,
    private readonly catalog: FlowCatalog,
    private readonly deliveries: DeliveryService,
    private readonly outcomes: DeliveryOutcomes,
    private readonly metrics: FlowMetrics,
    private readonly clock: Clock,
    private readonly config: AppConfig,
  ) {}

  onModuleInit(): void {
    this.outcomes.register('execution', (em, outcome) => this.onDeliveryOutcome(em, outcome));
  }

  /**
   * A new execution. A first step that is a callback counts as activated by the start, with the
   * trigger's data: the activation, API call or cron firing that started the flow is its callback.
   */
  async start(em: EntityManager, input: StartInput): Promise<string> {
    const now = this.clock.now();
    const id = randomUUID();
    const { flow, compiled } = input;
    const callbacks: Record<string, string> = {};
    for (const step of compiled.steps) {
      if (step.type === 'callback') {
        callbacks[step.definition.name] =
          `${activationUrl(input.baseUrl, flow.id, step.definition.triggerId)}?execution=${id}`;
      }
    }
    const context: ExecutionContext = {
      run: { id },
      execution: { id, startedAt: now.toISOString() },
      flow: { id: flow.id, name: flow.name, version: compiled.version },
      tenant: input.application.tenant,
      project: input.application.project,
      application: input.application.application,
      trigger: { type: input.trigger.type, at: now.toISOString(), data: input.trigger.data, user: input.trigger.user },
      steps: {},
      callbacks,
    };
    const row: ExecutionRow = {
      id,
      tenant_id: flow.tenantId,
      flow_id: flow.id,
      flow_version: compiled.version,
      status: transition(null, 'start'),
      step_index: 0,
      step_phase: null,
      run_at: now,
      awaiting_delivery_id: null,
      waiting_trigger_id: null,
      waiting_since: null,
      waiting_deadline: null,
      context,
      created_at: now,
      finished_at: null,
    };
    const events: NewEvent[] = [
      this.event(row, 'started', null, { trigger: input.trigger.type, version: compiled.version, ...input.detail }),
    ];
    const first = compiled.steps[0];
    if (first?.type === 'callback') {
      context.steps[first.definition.name] = stepOutput(input.trigger.data, input.trigger.user, now);
      row.step_index = 1;
      events.push(this.event(row, 'activated', first.definition.name, { by: 'start' }));
    }
    await this.repository.write(em, { inserted: [row], events, notify: true });
    this.metrics.started.inc({ trigger: input.trigger.type });
    return id;
  }

  /**
   * Runs each execution's steps from where it stands until it waits, sleeps, delivers or ends, then
   * writes all of them and their history at once (one statement for the batch).
   */
  async advance(em: EntityManager, rows: ExecutionRow[]): Promise<void> {
    const events: NewEvent[] = [];
    for (const row of rows) {
      const timer = this.metrics.stepDuration.startTimer({ type: 'advance' });
      await this.runSteps(em, row, events);
      timer();
    }
    await this.repository.write(em, { saved: rows, events });
  }

  private async runSteps(em: EntityManager, row: ExecutionRow, events: NewEvent[]): Promise<void> {
    const compiled = await this.catalog.version(row.flow_id, row.flow_version);
    if (!compiled) {
      this.move(row, 'fail', events, null, { reason: `flow version ${row.flow_version} no longer exists` });
    }
    while (compiled && row.status === 'running') {
      const index = row.step_index ?? 0;
      const step = compiled.steps[index];
      const now = this.clock.now();
      if (!step) {
        this.move(row, 'finish', events, null, {});
        break;
      }
      const name = step.definition.name;
      if (step.type === 'callback') {
        this.move(row, 'wait_for_callback', events, name, { triggerId: step.definition.triggerId });
        row.waiting_trigger_id = step.definition.triggerId;
        row.waiting_since = now;
        row.waiting_deadline = step.timeoutMs === null ? null : new Date(now.getTime() + step.timeoutMs);
        row.run_at = null;
        break;
      }
      if (step.type === 'delay') {
        if (row.step_phase !== 'delaying' && step.durationMs > 0) {
          row.step_phase = 'delaying';
          row.run_at = new Date(now.getTime() + step.durationMs);
          events.push(this.event(row, 'delay_started', name, { until: row.run_at.toISOString() }));
          break;
        }
        this.completeStep(row, name, { at: now.toISOString() }, events);
        continue;
      }
      // A webhook step waits for its delivery's outcome (onDeliveryOutcome), not for the worker.
      if (row.step_phase !== 'delivering') await this.sendWebhook(em, row, step, events);
      break;
    }
    if (row.status !== 'running') row.run_at = null;
  }

  /** Resumes a waiting execution at its callback step with the activation's data. */
  resume(
    row: ExecutionRow,
    step: CompiledCallback,
    data: unknown,
    user: unknown,
    events: NewEvent[],
    detail: Record<string, unknown>,
  ): void {
    const now = this.clock.now();
    this.move(row, 'activate', events, step.definition.name, detail);
    row.context.steps[step.definition.name] = stepOutput(data, user, now);
    row.step_index = (row.step_index ?? 0) + 1;
    this.clearWaiting(row);
    row.run_at = now;
  }

  /**
   * resume() as values, for executions a statement resumes without reading them first (activation's
   * group commit, FlowsRepository.resumeWaiting): the same status, history event and run_at, and
   * `output` for each caller's step output.
   */
  waitingResumption(
    step: CompiledCallback,
    detail: Record<string, unknown>,
  ): WaitingResumption & { output(data: unknown, user: unknown): StepOutput } {
    const now = this.clock.now();
    const status = transition('waiting', 'activate');
    return {
      status,
      runAt: now,
      step: step.definition.name,
      event: { type: 'activate', at: now, detail: { from: 'waiting', to: status, ...detail } },
      output: (data, user) => stepOutput(data, user, now),
    };
  }

  /** The callback step's timeout passed: fail, or continue without data, per its onTimeout. */
  async timeOut(em: EntityManager, row: ExecutionRow): Promise<void> {
    const compiled = await this.catalog.version(row.flow_id, row.flow_version);
    const step = compiled?.steps[row.step_index ?? 0];
    const events: NewEvent[] = [];
    const name = step?.definition.name ?? null;
    if (step?.type === 'callback' && step.definition.onTimeout === 'continue') {
      this.move(row, 'timeout_continue', events, name, { timeout: step.definition.timeout });
      row.context.steps[step.definition.name] = stepOutput(null, null, this.clock.now());
      row.step_index = (row.step_index ?? 0) + 1;
      this.clearWaiting(row);
      row.run_at = this.clock.now();
    } else {
      this.move(row, 'timeout_fail', events, name, {
        reason: `no activation within ${step?.definition.type === 'callback' ? step.definition.timeout : 'the timeout'}`,
      });
      this.clearWaiting(row);
    }
    await this.repository.write(em, { saved: [row], events, notify: row.status === 'running' });
  }

  async cancel(em: EntityManager, row: ExecutionRow, reason: string): Promise<void> {
    const events: NewEvent[] = [];
    // The step it is at (waiting, delaying or delivering), not the last one it finished.
    const compiled = await this.catalog.version(row.flow_id, row.flow_version);
    const step = compiled?.steps[row.step_index ?? 0]?.definition.name ?? null;
    this.move(row, 'cancel', events, step, { reason });
    this.clearWaiting(row);
    await this.repository.write(em, { saved: [row], events });
  }

  /** Called in the delivery's own transaction when a webhook step's delivery ends. */
  private async onDeliveryOutcome(em: EntityManager, outcome: DeliveryOutcome): Promise<void> {
    const row = await this.repository.lockAwaitingDelivery(em, outcome.origin.id, outcome.deliveryId);
    if (!row) return;
    const compiled = await this.catalog.version(row.flow_id, row.flow_version);
    const name = compiled?.steps[row.step_index ?? 0]?.definition.name ?? null;
    const events: NewEvent[] = [];
    if (outcome.status === 'SUCCEEDED' && name) {
      row.awaiting_delivery_id = null;
      this.completeStep(
        row,
        name,
        { at: this.clock.now().toISOString(), response: { status: outcome.statusCode, body: outcome.responseBody } },
        events,
        { deliveryId: outcome.deliveryId, statusCode: outcome.statusCode },
      );
      row.run_at = this.clock.now();
    } else {
      row.awaiting_delivery_id = null;
      this.move(row, 'fail', events, name, {
        reason: `webhook delivery ${outcome.status}`,
        deliveryId: outcome.deliveryId,
        statusCode: outcome.statusCode,
        error: outcome.error,
      });
    }
    await this.repository.write(em, { saved: [row], events, notify: row.status === 'running' });
  }

  private async sendWebhook(
    em: EntityManager,
    row: ExecutionRow,
    step: CompiledWebhook,
    events: NewEvent[],
  ): Promise<void> {
    const name = step.definition.name;
    let url: string | undefined;
    let headers: Record<string, string>;
    let body: unknown;
    try {
      url = step.url ? String(step.url.render(row.context)) : undefined;
      headers = Object.fromEntries(
        Object.entries(step.headers.render(row.context) as Record<string, unknown>).map(([key, value]) => [
          key.toLowerCase(),
          typeof value === 'string' ? value : JSON.stringify(value),
        ]),
      );
      body = step.body ? step.body.render(row.context) : row.context;
    } catch (error) {
      if (!(error instanceof JqRuntimeError)) throw error;
      this.move(row, 'fail', events, name, { reason: `template failed: ${error.message}` });
      return;
    }
    const target =
      step.definition.backendId !== undefined
        ? { backendId: step.definition.backendId, ...(url !== undefined && { url }) }
        : { applicationId: row.context.application.id, url: url! };
    const delivery = await this.deliveries.enqueue(em, {
      tenantId: row.tenant_id,
      target,
      method: step.definition.invocationMethod?.method ?? 'POST',
      headers,
      body: JSON.stringify(body ?? null),
      origin: { type: 'execution', id: row.id },
    });
    row.step_phase = 'delivering';
    row.awaiting_delivery_id = delivery.id;
    row.run_at = null;
    events.push(this.event(row, 'webhook_enqueued', name, { deliveryId: delivery.id, webhookId: delivery.webhookId }));
  }

  private completeStep(
    row: ExecutionRow,
    name: string,
    output: ExecutionContext['steps'][string],
    events: NewEvent[],
    detail: Record<string, unknown> = {},
  ): void {
    this.move(row, 'step_completed', events, name, detail);
    row.context.steps[name] = { ...row.context.steps[name], ...output };
    row.step_index = (row.step_index ?? 0) + 1;
    row.step_phase = null;
  }

  private move(
    row: ExecutionRow,
    event: ExecutionEvent,
    events: NewEvent[],
    step: string | null,
    detail: Record<string, unknown>,
  ): void {
    const from = row.status;
    row.status = transition(from, event);
    if (row.status !== 'running' && row.status !== 'waiting') {
      row.finished_at = this.clock.now();
      row.step_phase = null;
      this.metrics.finished.inc({ status: row.status });
    }
    events.push(this.event(row, event, step, { from, to: row.status, ...detail }));
    if (event === 'fail')
      this.logger.warn(`execution ${row.id} failed at ${step ?? 'start'}: ${String(detail.reason)}`);
  }

  private clearWaiting(row: ExecutionRow): void {
    row.waiting_trigger_id = null;
    row.waiting_since = null;
    row.waiting_deadline = null;
  }

  event(row: ExecutionRow, type: string, step: string | null, detail: Record<string, unknown>): NewEvent {
    return {
      tenantId: row.tenant_id,
      flowId: row.flow_id,
      executionId: row.id,
      type,
      step,
      detail,
      at: this.clock.now(),
    };
  }
}
