import { randomUUID } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import type { EntityManager } from '@mikro-orm/postgresql';
import { DeliveryService } from '../delivery/delivery.service.js';
import { RegistryService } from '../registry/registry.service.js';
import type { RoutableBackend } from '../registry/registry.types.js';
import { type ApplicationContext, TenancyService } from '../tenancy/tenancy.service.js';
import { FlowBridge } from './flow-bridge.js';
import type { RunRouting } from './triggers.entities.js';
import { TriggerMetrics } from './triggers.metrics.js';
import { TriggersRepository } from './triggers.repository.js';

export interface FiringTrigger {
  id: string;
  tenantId: string;
  applicationId: string;
  name: string;
  cronExpression: string;
  runKey: string;
  backendId: string | null;
  flowId: string | null;
}

/** Lookups shared by the firings of one scheduler batch (10,000 triggers rarely span many apps). */
export class FiringLookups {
  readonly applications = new Map<string, Promise<ApplicationContext | null>>();
  readonly routes = new Map<string, Promise<RoutableBackend[]>>();
}

/** `2025-12-01T10:00:00Z`: the scheduled instant in UTC, no fraction (SPEC §5). */
export function executionTime(scheduledFor: Date): string {
  return scheduledFor.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * One firing of one slot, inside the caller's transaction: record the run (unique per slot, so a
 * slot fires once however many replicas try), then route it: start the flow, or enqueue one
 * delivery per backend through the outbox. All of it commits together or not at all.
 */
@Injectable()
export class TriggerFiringService {
  private readonly logger = new Logger(TriggerFiringService.name);

  constructor(
    private readonly repository: TriggersRepository,
    private readonly deliveries: DeliveryService,
    private readonly registry: RegistryService,
    private readonly tenancy: TenancyService,
    private readonly flowBridge: FlowBridge,
    private readonly metrics: TriggerMetrics,
  ) {}

  /** The run's id, or null if this slot had already fired. */
  async fire(
    em: EntityManager,
    trigger: FiringTrigger,
    scheduledFor: Date,
    manual: boolean,
    firedAt: Date,
    lookups = new FiringLookups(),
  ): Promise<string | null> {
    const context = await memo(lookups.applications, trigger.applicationId, () =>
      this.tenancy.applicationContext(trigger.tenantId, trigger.applicationId),
    );
    if (!context) return null;
    const body = JSON.stringify({
      triggerId: trigger.id,
      triggerName: trigger.name,
      cronExpression: trigger.cronExpression,
      runKey: trigger.runKey,
      executionTime: executionTime(scheduledFor),
      application: context.application,
      tenant: context.tenant,
      project: context.project,
    });
    const targets = trigger.flowId ? [] : await this.targets(em, trigger, lookups);
    const routing: RunRouting = trigger.flowId ? 'FLOW_STARTED' : targets.length > 0 ? 'DELIVERIES' : 'UNROUTED';
    const runId = randomUUID();
    const inserted = await this.repository.insertRun(em, {
      id: runId,
      tenantId: trigger.tenantId,
      triggerId: trigger.id,
      scheduledFor,
      firedAt,
      manual,
      routing,
      executionId: null,
    });
    if (!inserted) return null;

    if (trigger.flowId) {
      const flows = this.flowBridge.flows;
      if (!flows) throw new Error(`trigger ${trigger.id} names flow ${trigger.flowId}, but flows are not available`);
      const executionId = await flows.startFromCron(em, {
        tenantId: trigger.tenantId,
        flowId: trigger.flowId,
        data: JSON.parse(body),
      });
      await this.repository.setExecution(em, runId, executionId);
    }
    for (const backendId of targets) {
      await this.deliveries.enqueue(em, {
        tenantId: trigger.tenantId,
        target: { backendId },
        body,
        origin: { type: 'trigger_run', id: runId },
      });
    }
    if (routing === 'UNROUTED')
      this.logger.log(`trigger ${trigger.id} fired for ${executionTime(scheduledFor)} but reached no backend`);
    this.metrics.fires.inc({ routing, manual: String(manual) });
    if (!manual) this.metrics.fireLag.observe(Math.max(0, firedAt.getTime() - scheduledFor.getTime()) / 1000);
    return runId;
  }

  private async targets(em: EntityManager, trigger: FiringTrigger, lookups: FiringLookups): Promise<string[]> {
    if (trigger.backendId) {
      const backend = await this.registry.findBackend(trigger.tenantId, trigger.backendId, em);
      return backend ? [backend.id] : [];
    }
    const routes = await memo(lookups.routes, `${trigger.tenantId}\u0000${trigger.runKey}`, () =>
      this.registry.findRoutableBackends(trigger.tenantId, trigger.runKey, em),
    );
    return routes.map((backend) => backend.id);
  }
}

function memo<T>(cache: Map<string, Promise<T>>, key: string, load: () => Promise<T>): Promise<T> {
  let value = cache.get(key);
  if (!value) {
    value = load();
    cache.set(key, value);
  }
  return value;
}
