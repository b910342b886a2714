import { randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import type { MachinePrincipal } from '../auth/principal.js';
import { Clock } from '../common/clock.js';
import { DomainException } from '../common/errors.js';
import { type ListQueryDto, type Page, paginate } from '../common/pagination.js';
import { DeliveryOriginsService, type DeliverySummary } from '../delivery/delivery-origins.service.js';
import { RegistryService } from '../registry/registry.service.js';
import { TenancyService } from '../tenancy/tenancy.service.js';
import { CronSchedule } from './cron-schedule.js';
import { FlowBridge } from './flow-bridge.js';
import { TriggerFiringService } from './trigger-firing.service.js';
import type {
  CreateTriggerDto,
  RunOutcome,
  TriggerResponse,
  TriggerRunResponse,
  UpdateTriggerDto,
} from './triggers.dto.js';
import { CronTrigger, TriggerRun } from './triggers.entities.js';

/** Cron triggers as operators manage them; firing itself is TriggerScheduler's and TriggerFiringService's. */
@Injectable()
export class TriggersService {
  constructor(
    private readonly em: EntityManager,
    private readonly tenancy: TenancyService,
    private readonly registry: RegistryService,
    private readonly flowBridge: FlowBridge,
    private readonly firing: TriggerFiringService,
    private readonly deliveries: DeliveryOriginsService,
    private readonly clock: Clock,
  ) {}

  async create(principal: MachinePrincipal, applicationId: string, input: CreateTriggerDto): Promise<TriggerResponse> {
    await this.requireApplication(principal, applicationId);
    const timezone = input.timezone ?? 'UTC';
    const schedule = parseSchedule(input.cronExpression, timezone);
    await this.checkRouting(principal, applicationId, input.backendId ?? null, input.flowId ?? null);
    const trigger = this.em.create(CronTrigger, {
      id: randomUUID(),
      tenantId: principal.tenantId,
      applicationId,
      name: input.name,
      cronExpression: input.cronExpression.trim(),
      timezone,
      runKey: input.runKey,
      enabled: input.enabled ?? true,
      backendId: input.backendId ?? null,
      flowId: input.flowId ?? null,
      misfirePolicy: input.misfirePolicy ?? 'fire_once',
    });
    trigger.nextRunAt = trigger.enabled ? schedule.nextAfter(this.clock.now()) : null;
    await this.em.persist(trigger).flush();
    return presentTrigger(trigger);
  }

  async list(principal: MachinePrincipal, applicationId: string, query: ListQueryDto): Promise<Page<TriggerResponse>> {
    await this.requireApplication(principal, applicationId);
    return paginate(this.em, CronTrigger, principal.scoped<CronTrigger>({ applicationId }), query, presentTrigger);
  }

  async get(principal: MachinePrincipal, id: string): Promise<TriggerResponse> {
    return presentTrigger(await this.find(principal, id));
  }

  async update(principal: MachinePrincipal, id: string, input: UpdateTriggerDto): Promise<TriggerResponse> {
    const trigger = await this.find(principal, id);
    const cronExpression = input.cronExpression?.trim() ?? trigger.cronExpression;
    const timezone = input.timezone ?? trigger.timezone;
    const schedule = parseSchedule(cronExpression, timezone);
    const backendId = input.backendId !== undefined ? input.backendId : trigger.backendId;
    const flowId = input.flowId !== undefined ? input.flowId : trigger.flowId;
    await this.checkRouting(principal, trigger.applicationId, backendId, flowId);
    const reschedule =
      cronExpression !== trigger.cronExpression ||
      timezone !== trigger.timezone ||
      (input.enabled === true && !trigger.enabled);
    this.em.assign(trigger, {
      ...(input.name !== undefined && { name: input.name }),
      ...(input.runKey !== undefined && { runKey: input.runKey }),
      ...(input.enabled !== undefined && { enabled: input.enabled }),
      ...(input.misfirePolicy !== undefined && { misfirePolicy: input.misfirePolicy }),
      cronExpression,
      timezone,
      backendId,
      flowId,
    });
    // Resuming or changing the schedule starts from now: a paused trigger does not catch up.
    if (!trigger.enabled) trigger.nextRunAt = null;
    else if (reschedule || trigger.nextRunAt === null) trigger.nextRunAt = schedule.nextAfter(this.clock.now());
    await this.em.flush();
    return presentTrigger(trigger);
  }

  async remove(principal: MachinePrincipal, id: string): Promise<void> {
    const trigger = await this.find(principal, id);
    await this.em.remove(trigger).flush();
  }

  /** Fires now, as a manual run for the current second; the schedule is left as it is. */
  async runNow(principal: MachinePrincipal, id: string): Promise<TriggerRunResponse> {
    const trigger = await this.find(principal, id);
    const now = this.clock.now();
    const scheduledFor = new Date(Math.floor(now.getTime() / 1000) * 1000);
    const runId = await this.em.fork().transactional((em) => this.firing.fire(em, trigger, scheduledFor, true, now));
    if (!runId) throw DomainException.notFound('Application');
    const run = await this.em.fork().findOneOrFail(TriggerRun, { id: runId });
    return (await this.presentRuns(principal, [run]))[0];
  }

  async runs(principal: MachinePrincipal, id: string, query: ListQueryDto): Promise<Page<TriggerRunResponse>> {
    await this.find(principal, id);
    const page = await paginate(this.em, TriggerRun, principal.scoped<TriggerRun>({ triggerId: id }), query, (r) => r);
    return { ...page, items: await this.presentRuns(principal, page.items) };
  }

  private async presentRuns(principal: MachinePrincipal, runs: TriggerRun[]): Promise<TriggerRunResponse[]> {
    const deliveries = await this.deliveries.deliveriesOf(
      principal.tenantId,
      runs.filter((run) => run.routing === 'DELIVERIES').map((run) => run.id),
    );
    return runs.map((run) => {
      const ofRun = deliveries.get(run.id) ?? [];
      return {
        id: run.id,
        triggerId: run.triggerId,
        scheduledFor: run.scheduledFor.toISOString(),
        firedAt: run.firedAt.toISOString(),
        manual: run.manual,
        outcome: runOutcome(run, ofRun),
        deliveries: ofRun,
        executionId: run.executionId,
      };
    });
  }

  private async checkRouting(
    principal: MachinePrincipal,
    applicationId: string,
    backendId: string | null,
    flowId: string | null,
  ): Promise<void> {
    if (backendId && flowId) throw DomainException.field('flowId', 'set backendId or flowId, not both');
    if (backendId && !(await this.registry.findBackend(principal.tenantId, backendId))) {
      throw DomainException.field('backendId', 'no such backend in this tenant');
    }
    if (flowId) {
      const flows = this.flowBridge.flows;
      if (!flows || !(await flows.flowExists(principal.tenantId, applicationId, flowId))) {
        throw DomainException.field('flowId', 'no such flow in this application');
      }
    }
  }

  private async requireApplication(principal: MachinePrincipal, applicationId: string): Promise<void> {
    if (!(await this.tenancy.applicationContext(principal.tenantId, applicationId))) {
      throw DomainException.notFound('Application');
    }
  }

  private async find(principal: MachinePrincipal, id: string): Promise<CronTrigger> {
    const trigger = await this.em.findOne(CronTrigger, principal.scoped<CronTrigger>({ id }));
    if (!trigger) throw DomainException.notFound('Trigger');
    return trigger;
  }
}

function parseSchedule(expression: string, timezone: string): CronSchedule {
  const parsed = CronSchedule.parse(expression, timezone);
  if (parsed instanceof CronSchedule) return parsed;
  throw new DomainException(parsed.code, parsed.message);
}

/** SPEC §7: PENDING while any delivery is PENDING or SENDING, then FAILED if any is DEAD or PARKED. */
export function runOutcome(run: TriggerRun, deliveries: DeliverySummary[]): RunOutcome {
  if (run.routing === 'UNROUTED' || run.routing === 'FLOW_STARTED') return run.routing;
  if (deliveries.some((d) => d.status === 'PENDING' || d.status === 'SENDING')) return 'PENDING';
  if (deliveries.some((d) => d.status === 'DEAD' || d.status === 'PARKED')) return 'FAILED';
  return 'DELIVERED';
}

export function presentTrigger(trigger: CronTrigger): TriggerResponse {
  return {
    id: trigger.id,
    applicationId: trigger.applicationId,
    name: trigger.name,
    cronExpression: trigger.cronExpression,
    timezone: trigger.timezone,
    runKey: trigger.runKey,
    enabled: trigger.enabled,
    backendId: trigger.backendId,
    flowId: trigger.flowId,
    misfirePolicy: trigger.misfirePolicy,
    nextRunAt: trigger.nextRunAt?.toISOString() ?? null,
    createdAt: trigger.createdAt.toISOString(),
    updatedAt: trigger.updatedAt.toISOString(),
  };
}
