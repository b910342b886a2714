import { type BeforeApplicationShutdown, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { EntityManager } from '@mikro-orm/postgresql';
import { Clock } from '../common/clock.js';
import { AppConfig } from '../config/app-config.js';
import { CronSchedule } from './cron-schedule.js';
import { FIRE_ALL_CAP, planSlots } from './misfire.js';
import { FiringLookups, TriggerFiringService } from './trigger-firing.service.js';
import { TriggerMetrics } from './triggers.metrics.js';
import { type DueTriggerRow, TriggersRepository } from './triggers.repository.js';

const BATCH_SIZE = 100;
/** Bounds one tick; the next tick goes on where this one stopped. */
const MAX_BATCHES_PER_TICK = 50;
const TICK_INTERVAL_NAME = 'trigger-scheduler';
const METRICS_INTERVAL_MS = 5_000;

/**
 * The leaderless cron scheduler. Every replica ticks; each tick claims due triggers in batches
 * with FOR UPDATE SKIP LOCKED and, per batch, in one transaction: records each slot's run (unique
 * per slot), routes it through the outbox, and stores the trigger's next run. A replica killed
 * mid-batch rolls the batch back and another replica fires those slots.
 */
@Injectable()
export class TriggerScheduler implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(TriggerScheduler.name);
  private readonly schedules = new Map<string, CronSchedule>();
  private ticking: Promise<void> | null = null;
  private stopping = false;
  private lastMetricsAt = 0;

  constructor(
    private readonly em: EntityManager,
    private readonly repository: TriggersRepository,
    private readonly firing: TriggerFiringService,
    private readonly metrics: TriggerMetrics,
    private readonly clock: Clock,
    private readonly config: AppConfig,
    private readonly scheduler: SchedulerRegistry,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.config.schedulerEnabled) {
      this.logger.log('cron scheduler disabled on this replica (SCHEDULER_ENABLED=false)');
      return;
    }
    this.scheduler.addInterval(
      TICK_INTERVAL_NAME,
      setInterval(() => void this.tick(), this.config.schedulerTickMs),
    );
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopping = true;
    if (this.scheduler.doesExist('interval', TICK_INTERVAL_NAME)) this.scheduler.deleteInterval(TICK_INTERVAL_NAME);
    await this.ticking;
  }

  /** One pass over everything due now; concurrent calls share the pass in progress. */
  tick(): Promise<void> {
    this.ticking ??= this.runTick().finally(() => (this.ticking = null));
    return this.ticking;
  }

  private async runTick(): Promise<void> {
    try {
      for (let batch = 0; batch < MAX_BATCHES_PER_TICK && !this.stopping; batch++) {
        if ((await this.fireBatch()) < BATCH_SIZE) break;
      }
      if (Date.now() - this.lastMetricsAt >= METRICS_INTERVAL_MS) {
        this.lastMetricsAt = Date.now();
        this.metrics.dueUnfired.set(await this.repository.countDue(this.em.fork(), this.clock.now()));
      }
    } catch (error) {
      this.logger.warn(`scheduler tick failed: ${(error as Error).message}`);
    }
  }

  private async fireBatch(): Promise<number> {
    const now = this.clock.now();
    return this.em.fork().transactional(async (em) => {
      const due = await this.repository.claimDue(em, now, BATCH_SIZE);
      const lookups = new FiringLookups();
      for (const trigger of due) await this.fireDue(em, trigger, now, lookups);
      return due.length;
    });
  }

  private async fireDue(em: EntityManager, trigger: DueTriggerRow, now: Date, lookups: FiringLookups): Promise<void> {
    const schedule = this.schedule(trigger);
    if (!schedule) {
      this.logger.error(`trigger ${trigger.id} has an unusable schedule; pausing its schedule`);
      return this.repository.advance(em, trigger.id, null);
    }
    const { slots, skipped: truncated } = schedule.occurrencesBetween(
      new Date(Date.parse(trigger.next_run_at) - 1),
      now,
      FIRE_ALL_CAP,
    );
    const plan = planSlots(slots, now, trigger.misfire_policy, this.config.misfireThresholdMs, truncated);
    if (plan.skipped > 0) {
      this.metrics.skippedSlots.inc(plan.skipped);
      this.logger.warn(`trigger ${trigger.id}: ${plan.skipped} missed slot(s) not fired (${trigger.misfire_policy})`);
    }
    const firing = {
      id: trigger.id,
      tenantId: trigger.tenant_id,
      applicationId: trigger.application_id,
      name: trigger.name,
      cronExpression: trigger.cron_expression,
      runKey: trigger.run_key,
      backendId: trigger.backend_id,
      flowId: trigger.flow_id,
    };
    for (const slot of plan.fire) await this.firing.fire(em, firing, slot, false, now, lookups);
    await this.repository.advance(em, trigger.id, schedule.nextAfter(now));
  }

  private schedule(trigger: DueTriggerRow): CronSchedule | null {
    const key = `${trigger.timezone}\u0000${trigger.cron_expression}`;
    let schedule = this.schedules.get(key);
    if (!schedule) {
      const parsed = CronSchedule.parse(trigger.cron_expression, trigger.timezone);
      if (!(parsed instanceof CronSchedule)) return null;
      if (this.schedules.size > 10_000) this.schedules.clear();
      this.schedules.set(key, (schedule = parsed));
    }
    return schedule;
  }
}
