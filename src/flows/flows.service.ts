import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import type { MachinePrincipal } from '../auth/principal.js';
import { DomainException } from '../common/errors.js';
import { type Page, paginate } from '../common/pagination.js';
import { AppConfig } from '../config/app-config.js';
import { RegistryService } from '../registry/registry.service.js';
import { TenancyService } from '../tenancy/tenancy.service.js';
import { FINISHED } from './execution-state.js';
import { activationUrl, ExecutionEngine } from './execution-engine.js';
import { FlowCatalog } from './flow-catalog.js';
import { type StepDefinition, validateSteps } from './flow-definition.js';
import type { ExecutionResponse, FlowResponse, ListExecutionsQuery, SaveFlowDto } from './flows.dto.js';
import { Execution, Flow, FlowEvent, FlowVersion } from './flows.entities.js';
import { FlowsRepository } from './flows.repository.js';
import type { ListQueryDto } from '../common/pagination.js';

/** Flow definitions and their executions, as operators manage them. */
@Injectable()
export class FlowsService {
  constructor(
    private readonly em: EntityManager,
    private readonly tenancy: TenancyService,
    private readonly registry: RegistryService,
    private readonly catalog: FlowCatalog,
    private readonly engine: ExecutionEngine,
    private readonly repository: FlowsRepository,
    private readonly config: AppConfig,
  ) {}

  async create(
    principal: MachinePrincipal,
    applicationId: string,
    input: SaveFlowDto,
    requestBase: string,
  ): Promise<FlowResponse> {
    await this.requireApplication(principal, applicationId);
    const steps = validateSteps(input.steps);
    await this.checkTargets(principal, steps);
    const flow = this.em.create(Flow, {
      id: randomUUID(),
      tenantId: principal.tenantId,
      applicationId,
      name: input.name,
      version: 1,
      publicBaseUrl: requestBase,
    });
    const version = this.em.create(FlowVersion, { flowId: flow.id, version: 1, tenantId: principal.tenantId, steps });
    await this.em.persist([flow, version]).flush();
    return this.present(flow, steps);
  }

  /** A new version; executions already started finish on the version they started with. */
  async replace(
    principal: MachinePrincipal,
    id: string,
    input: SaveFlowDto,
    requestBase: string,
  ): Promise<FlowResponse> {
    const flow = await this.find(principal, id);
    const previous = await this.em.findOneOrFail(FlowVersion, { flowId: flow.id, version: flow.version });
    const steps = validateSteps(input.steps, previous.steps);
    await this.checkTargets(principal, steps);
    flow.name = input.name;
    flow.version += 1;
    flow.updatedAt = new Date();
    flow.publicBaseUrl = requestBase;
    this.em.persist(
      this.em.create(FlowVersion, { flowId: flow.id, version: flow.version, tenantId: flow.tenantId, steps }),
    );
    await this.em.flush();
    return this.present(flow, steps);
  }

  async list(principal: MachinePrincipal, applicationId: string, query: ListQueryDto): Promise<Page<FlowResponse>> {
    await this.requireApplication(principal, applicationId);
    const page = await paginate(this.em, Flow, principal.scoped<Flow>({ applicationId }), query, (flow) => flow);
    const versions = await this.em.find(FlowVersion, {
      $or: page.items.map((flow) => ({ flowId: flow.id, version: flow.version })),
    });
    const steps = new Map(versions.map((version) => [version.flowId, version.steps]));
    return { ...page, items: page.items.map((flow) => this.present(flow, steps.get(flow.id) ?? [])) };
  }

  async get(principal: MachinePrincipal, id: string): Promise<FlowResponse> {
    const flow = await this.find(principal, id);
    const version = await this.em.findOneOrFail(FlowVersion, { flowId: flow.id, version: flow.version });
    return this.present(flow, version.steps);
  }

  /** Starts by API: trigger.data is `input` (default {}). */
  async start(
    principal: MachinePrincipal,
    flowId: string,
    input: unknown,
    requestBase: string,
  ): Promise<ExecutionResponse> {
    const flow = await this.find(principal, flowId);
    const compiled = await this.catalog.version(flow.id, flow.version);
    const application = await this.tenancy.applicationContext(flow.tenantId, flow.applicationId);
    if (!compiled || !application) throw DomainException.notFound('Flow');
    const executionId = await this.em.fork().transactional((em) =>
      this.engine.start(em, {
        flow,
        compiled,
        application,
        trigger: { type: 'api', data: input === undefined ? {} : input, user: null },
        baseUrl: this.baseUrl(flow, requestBase),
      }),
    );
    return this.getExecution(principal, executionId);
  }

  async listExecutions(
    principal: MachinePrincipal,
    flowId: string,
    query: ListExecutionsQuery,
  ): Promise<Page<ExecutionResponse>> {
    await this.find(principal, flowId);
    const where = principal.scoped<Execution>({ flowId, ...(query.status && { status: query.status }) });
    const page = await paginate(this.em, Execution, where, query, (execution) => execution);
    const events = await this.historyOf(page.items.map((execution) => execution.id));
    return {
      ...page,
      items: await Promise.all(page.items.map((execution) => this.presentExecution(execution, events))),
    };
  }

  async getExecution(principal: MachinePrincipal, id: string): Promise<ExecutionResponse> {
    const execution = await this.em.fork().findOne(Execution, principal.scoped<Execution>({ id }));
    if (!execution) throw DomainException.notFound('Execution');
    return this.presentExecution(execution, await this.historyOf([execution.id]));
  }

  /** The history of several executions in one query, oldest first per execution. */
  private async historyOf(executionIds: string[]): Promise<Map<string, FlowEvent[]>> {
    const byExecution = new Map<string, FlowEvent[]>(executionIds.map((id) => [id, []]));
    if (executionIds.length === 0) return byExecution;
    const events = await this.em
      .fork()
      .find(FlowEvent, { executionId: { $in: executionIds } }, { orderBy: { seq: 'asc' } });
    for (const event of events) byExecution.get(event.executionId!)?.push(event);
    return byExecution;
  }

  async cancel(principal: MachinePrincipal, id: string): Promise<ExecutionResponse> {
    await this.em.fork().transactional(async (em) => {
      const row = await this.repository.lockById(em, principal.tenantId, id);
      if (!row) throw DomainException.notFound('Execution');
      if (FINISHED.includes(row.status))
        throw new DomainException('EXECUTION_FINISHED', `The execution is already ${row.status}`);
      await this.engine.cancel(em, row, `cancelled by ${principal.username}`);
    });
    return this.getExecution(principal, id);
  }

  /** For cron triggers (through FlowBridge). */
  async flowExists(tenantId: string, applicationId: string, flowId: string): Promise<boolean> {
    return (await this.em.fork().count(Flow, { id: flowId, tenantId, applicationId })) > 0;
  }

  async startFromCron(em: EntityManager, input: { tenantId: string; flowId: string; data: unknown }): Promise<string> {
    const current = await this.catalog.current(input.tenantId, input.flowId);
    const application = current && (await this.tenancy.applicationContext(input.tenantId, current.flow.applicationId));
    if (!current || !application) throw new Error(`flow ${input.flowId} is gone`);
    return this.engine.start(em, {
      flow: current.flow,
      compiled: current.compiled,
      application,
      trigger: { type: 'cron', data: input.data, user: null },
      baseUrl: this.baseUrl(current.flow, ''),
    });
  }

  baseUrl(flow: Flow, requestBase: string): string {
    return this.config.publicBaseUrl ?? flow.publicBaseUrl ?? requestBase;
  }

  private present(flow: Flow, steps: StepDefinition[]): FlowResponse {
    const base = this.baseUrl(flow, '');
    return {
      id: flow.id,
      applicationId: flow.applicationId,
      name: flow.name,
      version: flow.version,
      steps: steps.map((step) =>
        step.type === 'callback' ? { ...step, activationUrl: activationUrl(base, flow.id, step.triggerId) } : step,
      ),
      createdAt: flow.createdAt.toISOString(),
      updatedAt: flow.updatedAt.toISOString(),
    };
  }

  private async presentExecution(
    execution: Execution,
    histories: Map<string, FlowEvent[]>,
  ): Promise<ExecutionResponse> {
    const compiled = await this.catalog.version(execution.flowId, execution.flowVersion);
    const active = execution.status === 'running' || execution.status === 'waiting';
    const current = active && execution.stepIndex !== null ? compiled?.steps[execution.stepIndex] : undefined;
    const history = histories.get(execution.id) ?? [];
    return {
      id: execution.id,
      flowId: execution.flowId,
      flowVersion: execution.flowVersion,
      status: execution.status,
      currentStep: current?.definition.name ?? null,
      waitingAt:
        execution.status === 'waiting' && current && execution.waitingTriggerId && execution.waitingSince
          ? {
              step: current.definition.name,
              triggerId: execution.waitingTriggerId,
              since: execution.waitingSince.toISOString(),
              deadline: execution.waitingDeadline?.toISOString() ?? null,
            }
          : null,
      context: execution.context as unknown as Record<string, unknown>,
      history: history.map((event) => ({
        at: event.at.toISOString(),
        type: event.type,
        step: event.step,
        detail: event.detail,
      })),
      createdAt: execution.createdAt.toISOString(),
      updatedAt: execution.updatedAt.toISOString(),
    };
  }

  /** Webhook steps' backends must be the tenant's; fixed URLs must pass the outgoing-URL rules now. */
  private async checkTargets(principal: MachinePrincipal, steps: StepDefinition[]): Promise<void> {
    for (const [index, step] of steps.entries()) {
      if (step.type !== 'webhook') continue;
      if (step.backendId && !(await this.registry.findBackend(principal.tenantId, step.backendId))) {
        throw DomainException.field(`steps[${index}].backendId`, 'no such backend in this tenant');
      }
      const url = step.invocationMethod?.url;
      if (url && !url.includes('{{'))
        await this.registry.assertAcceptableUrl(url, `steps[${index}].invocationMethod.url`);
    }
  }

  private async requireApplication(principal: MachinePrincipal, applicationId: string): Promise<void> {
    if (!(await this.tenancy.applicationContext(principal.tenantId, applicationId))) {
      throw DomainException.notFound('Application');
    }
  }

  private async find(principal: MachinePrincipal, id: string): Promise<Flow> {
    const flow = await this.em.findOne(Flow, principal.scoped<Flow>({ id }));
    if (!flow) throw DomainException.notFound('Flow');
    return flow;
  }
}
