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

/** Lookups shared by the firings of one scheduler batch (10,000 triggers rarely span many apps or backends). */
export class FiringLookups {
  readonly applications = new Map<string, Promise<ApplicationContext | null>>();
  readonly routes = new Map<string, Promise<RoutableBackend[]>>();
  readonly backends = new Map<string, Promise<string[]>>();
}

/** One slot of one trigger to fire. */
export interface SlotFiring {
  trigger: FiringTrigger;
  scheduledFor: Date;
}

interface PreparedRun {
  id: string;
  trigger: FiringTrigger;
  scheduledFor: Date;
  body: string;
  targets: string[];
  routing: RunRouting;
}

/** `2025-12-01T10:00:00Z`: the scheduled instant in UTC, no fraction (SPEC §5). */
export function executionTime(scheduledFor: Date): string {
  return scheduledFor.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Firings of slots, inside the caller's transaction: record the runs (unique per slot, so a slot
 * fires once however many replicas try), then route each: start the flow, or enqueue one delivery
 * per backend through the outbox. All of it commits together or not at all.
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

  /** The run's id, or null if this slot had already fired (or the application is gone). */
  async fire(
    em: EntityManager,
    trigger: FiringTrigger,
    scheduledFor: Date,
    manual: boolean,
    firedAt: Date,
  ): Promise<string | null> {
    const [runId] = await this.fireMany(em, [{ trigger, scheduledFor }], manual, firedAt);
    return runId;
  }

  /**
   * Fires a scheduler batch with one INSERT for all its runs, whatever its size: per-firing round
   * trips are what made a busy second slow. Returns each slot's run id, or null where the slot had
   * already fired.
   */
  async fireMany(
    em: EntityManager,
    slots: readonly SlotFiring[],
    manual: boolean,
    firedAt: Date,
  ): Promise<(string | null)[]> {
    const lookups = new FiringLookups();
    const prepared: (PreparedRun | null)[] = [];
    for (const { trigger, scheduledFor } of slots)
      prepared.push(await this.prepare(em, trigger, scheduledFor, lookups));
    const candidates = prepared.filter((run): run is PreparedRun => run !== null);
    const inserted = new Set(
      await this.repository.insertRuns(
        em,
        candidates.map((run) => ({
          id: run.id,
          tenantId: run.trigger.tenantId,
          triggerId: run.trigger.id,
          scheduledFor: run.scheduledFor,
          firedAt,
          manual,
          routing: run.routing,
          executionId: null,
        })),
      ),
    );
    const fired = candidates.filter((run) => inserted.has(run.id));
    for (const run of fired) if (run.trigger.flowId) await this.startFlow(em, run);
    // Every delivery of the batch in one call: one INSERT and one NOTIFY, not four round trips each.
    await this.deliveries.enqueueMany(
      em,
      fired.flatMap((run) =>
        run.targets.map((backendId) => ({
          tenantId: run.trigger.tenantId,
          target: { backendId },
          body: run.body,
          origin: { type: 'trigger_run' as const, id: run.id },
        })),
      ),
    );
    for (const run of fired) {
      if (run.routing === 'UNROUTED') {
        this.logger.log(
          `trigger ${run.trigger.id} fired for ${executionTime(run.scheduledFor)} but reached no backend`,
        );
      }
      this.metrics.fires.inc({ routing: run.routing, manual: String(manual) });
      if (!manual) this.metrics.fireLag.observe(Math.max(0, firedAt.getTime() - run.scheduledFor.getTime()) / 1000);
    }
    return prepared.map((run) => (run && inserted.has(run.id) ? run.id : null));
  }

  /** Payload and targets of one firing; null if its application is gone (deleted meanwhile). */
  private async prepare(
    em: EntityManager,
    trigger: FiringTrigger,
    scheduledFor: Date,
    lookups: FiringLookups,
  ): Promise<PreparedRun | null> {
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
    return { id: randomUUID(), trigger, scheduledFor, body, targets, routing };
  }

  private async startFlow(em: EntityManager, run: PreparedRun): Promise<void> {
    const flows = this.flowBridge.flows;
    if (!flows)
      throw new Error(`trigger ${run.trigger.id} names flow ${run.trigger.flowId}, but flows are not available`);
    const executionId = await flows.startFromCron(em, {
      tenantId: run.trigger.tenantId,
      flowId: run.trigger.flowId!,
      data: JSON.parse(run.body),
    });
    await this.repository.setExecution(em, run.id, executionId);
  }

  private async targets(em: EntityManager, trigger: FiringTrigger, lookups: FiringLookups): Promise<string[]> {
    if (trigger.backendId) {
      const backendId = trigger.backendId;
      // Disabled or not, the named backend gets the delivery (PARKED if disabled); deleted, nobody does.
      return memo(lookups.backends, `${trigger.tenantId}\u0000${backendId}`, async () => {
        const backend = await this.registry.findBackend(trigger.tenantId, backendId, em);
        return backend ? [backend.id] : [];
      });
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
