import {
  type BeforeApplicationShutdown,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { EntityManager } from '@mikro-orm/postgresql';
import { Clock } from '../common/clock.js';
import { isDatabaseUnavailable } from '../common/database-errors.js';
import { AppConfig } from '../config/app-config.js';
import { CronSchedule, type Occurrences } from './cron-schedule.js';
import { FIRE_ALL_CAP, planSlots } from './misfire.js';
import { type FiringTrigger, type SlotFiring, TriggerFiringService } from './trigger-firing.service.js';
import { TriggerMetrics } from './triggers.metrics.js';
import { type DueTriggerRow, TriggersRepository } from './triggers.repository.js';

const BATCH_SIZE = 100;
/** Bounds one tick; the next tick goes on where this one stopped. */
const MAX_BATCHES_PER_TICK = 50;
/** Batches in flight at once in a busy second (each holds a pooled connection meanwhile). */
const LANES = 3;
const TICK_TIMER_NAME = 'trigger-scheduler';
/** First and longest pause of a trigger that failed to fire (doubling in between). */
const QUARANTINE_MS = 60_000;
const QUARANTINE_MAX_MS = 3_600_000;
const METRICS_INTERVAL_MS = 5_000;

/**
 * The leaderless cron scheduler. Every replica ticks; each tick claims due triggers in batches
 * with FOR UPDATE SKIP LOCKED and, per batch, in one transaction: records each slot's run (unique
 * per slot), routes it through the outbox, and stores the trigger's next run. A replica killed
 * mid-batch rolls the batch back and another replica fires those slots.
 */
@Injectable()
export class TriggerScheduler implements OnApplicationBootstrap, OnModuleDestroy, BeforeApplicationShutdown {
  private readonly logger = new Logger(TriggerScheduler.name);
  private readonly schedules = new Map<string, CronSchedule>();
  private ticking: Promise<boolean> | null = null;
  private stopping = false;
  private lastMetricsAt = 0;
  /** Triggers that failed to fire, by id: not claimed by this replica until `until`. */
  private readonly failing = new Map<string, { until: number; failures: number }>();

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
    this.scheduleTick(false);
  }

  /** Shutdown, first phase: no new tick or batch (as DeliveryWorker.onModuleDestroy, and for the same reason). */
  onModuleDestroy(): void {
    this.stopping = true;
    if (this.scheduler.doesExist('timeout', TICK_TIMER_NAME)) this.scheduler.deleteTimeout(TICK_TIMER_NAME);
  }

  /** Second phase: the batches under way commit (or roll back) before the connections close. */
  async beforeApplicationShutdown(): Promise<void> {
    await this.ticking;
  }

  /** One pass over everything due now; concurrent calls share the pass in progress. */
  async tick(): Promise<void> {
    await this.tickPass();
  }

  private tickPass(): Promise<boolean> {
    this.ticking ??= this.runTick().finally(() => (this.ticking = null));
    return this.ticking;
  }

  /**
   * The next tick: at once when this one stopped at its batch cap with more due; else
   * SCHEDULER_TICK_MS ± 25 % after this one ended, moved forward to just after a whole second if
   * one comes first. Cron slots are whole seconds, so that tick finds a slot a few ms old instead
   * of up to a tick interval old. The jitter (±25 %, and 2–22 ms after the second) matters with
   * several replicas: at fixed offsets, whichever replica's offset came first after the boundary
   * would fire every slot of a quiet system while the others idle.
   */
  private scheduleTick(moreDue: boolean): void {
    if (this.stopping) return;
    let delay = 0;
    if (!moreDue) {
      const now = this.clock.now().getTime();
      const planned = now + this.config.schedulerTickMs * (0.75 + Math.random() * 0.5);
      const lastSecondBefore = Math.floor(planned / 1000) * 1000;
      const at = lastSecondBefore > now ? lastSecondBefore + 2 + Math.random() * 20 : planned;
      delay = Math.round(at - now);
    }
    const timer = setTimeout(() => {
      this.scheduler.deleteTimeout(TICK_TIMER_NAME);
      void this.tickPass().then((more) => this.scheduleTick(more));
    }, delay);
    this.scheduler.addTimeout(TICK_TIMER_NAME, timer);
  }

  /**
   * Fires batches until a claim comes back short; true when the pass stopped at
   * MAX_BATCHES_PER_TICK with due triggers left. A full first batch means a busy second: then
   * LANES batches run at once, each in its own transaction (SKIP LOCKED keeps their claims
   * apart), so the database works on one while this process prepares the next.
   */
  private async runTick(): Promise<boolean> {
    let moreDue = false;
    try {
      let batches = 1;
      if ((await this.fireBatch()) === BATCH_SIZE) {
        const lane = async (): Promise<void> => {
          while (batches < MAX_BATCHES_PER_TICK && !this.stopping) {
            batches++;
            if ((await this.fireBatch()) < BATCH_SIZE) return;
          }
          moreDue = !this.stopping;
        };
        const lanes = await Promise.allSettled(Array.from({ length: LANES }, lane));
        const failed = lanes.find((result) => result.status === 'rejected');
        if (failed) throw failed.reason;
      }
      if (Date.now() - this.lastMetricsAt >= METRICS_INTERVAL_MS) {
        this.lastMetricsAt = Date.now();
        this.metrics.dueUnfired.set(await this.repository.countDue(this.em.fork(), this.clock.now()));
      }
    } catch (error) {
      this.logger.warn(`scheduler tick failed: ${(error as Error).message}`);
      return false;
    }
    return moreDue;
  }

  /**
   * Claims a batch and fires it in one transaction: every slot's run with one INSERT, every
   * trigger's next run with one UPDATE. Returns how many triggers were claimed. If the batch
   * fails, its triggers are fired one per transaction instead, so that one trigger that cannot
   * fire (its flow refuses to start, say) does not hold back the others claimed with it, at
   * every tick, for as long as it stays at the head of the due index. A batch the database
   * could not take (connection lost, deadlock) is no trigger's fault: the next tick tries it again.
   */
  private async fireBatch(): Promise<number> {
    const now = this.clock.now();
    const excluded = this.quarantined(now);
    try {
      return await this.em
        .fork()
        .transactional(async (em) =>
          this.fireClaimed(em, await this.repository.claimDue(em, now, BATCH_SIZE, excluded), now),
        );
    } catch (error) {
      if (this.stopping || isDatabaseUnavailable(error)) throw error;
      this.logger.warn(`a scheduler batch failed (${(error as Error).message}); firing its triggers one by one`);
      return this.fireSingly(now, excluded);
    }
  }

  /**
   * Up to a batch of due triggers, each in its own transaction. One that fails is quarantined:
   * left due (its slot is not lost) but not claimed by this replica for a while, with the
   * error logged; the trigger after it goes on. A failed claim, or a database that fails under
   * the firing (its connection cut, say), is the database's problem, not a trigger's, and is thrown.
   */
  private async fireSingly(now: Date, excluded: string[]): Promise<number> {
    let claimed = 0;
    while (claimed < BATCH_SIZE && !this.stopping) {
      let trigger: DueTriggerRow | undefined;
      try {
        const fired = await this.em.fork().transactional(async (em) => {
          [trigger] = await this.repository.claimDue(em, now, 1, excluded);
          return trigger ? this.fireClaimed(em, [trigger], now) : 0;
        });
        if (fired === 0) break;
      } catch (error) {
        if (!trigger || isDatabaseUnavailable(error)) throw error;
        this.quarantine(trigger.id, now, error as Error);
        excluded.push(trigger.id);
      }
      claimed++;
    }
    return claimed;
  }

  /** Ids this replica skips for now; expired entries are kept a while to grow the backoff. */
  private quarantined(now: Date): string[] {
    const ids: string[] = [];
    for (const [id, entry] of this.failing) {
      if (entry.until > now.getTime()) ids.push(id);
      else if (entry.until < now.getTime() - QUARANTINE_MAX_MS) this.failing.delete(id);
    }
    return ids;
  }

  private quarantine(triggerId: string, now: Date, error: Error): void {
    const failures = (this.failing.get(triggerId)?.failures ?? 0) + 1;
    const backoffMs = Math.min(QUARANTINE_MS * 2 ** (failures - 1), QUARANTINE_MAX_MS);
    this.failing.set(triggerId, { until: now.getTime() + backoffMs, failures });
    this.metrics.fireFailures.inc();
    this.logger.error(
      `trigger ${triggerId} failed to fire (${error.message}); it stays due and this replica retries it in ${backoffMs / 1000} s`,
    );
  }

  private async fireClaimed(em: EntityManager, due: DueTriggerRow[], now: Date): Promise<number> {
    // croner takes ~50 µs per step; triggers sharing an expression and a next run share the answers.
    const walks = new Map<string, Occurrences>();
    const nextRuns = new Map<CronSchedule, Date | null>();
    const slots: SlotFiring[] = [];
    const next: { triggerId: string; nextRunAt: Date | null }[] = [];
    for (const trigger of due) {
      const schedule = this.schedule(trigger);
      if (!schedule) {
        this.logger.error(`trigger ${trigger.id} has an unusable schedule; pausing its schedule`);
        next.push({ triggerId: trigger.id, nextRunAt: null });
        continue;
      }
      const nextRunAt = new Date(trigger.next_run_at).getTime();
      const walkKey = `${trigger.timezone}\u0000${trigger.cron_expression}\u0000${nextRunAt}`;
      let walk = walks.get(walkKey);
      if (!walk) {
        walk = schedule.occurrencesBetween(new Date(nextRunAt - 1), now, FIRE_ALL_CAP);
        walks.set(walkKey, walk);
      }
      for (const scheduledFor of this.slotsToFire(trigger, walk, now)) {
        slots.push({ trigger: firingOf(trigger), scheduledFor });
      }
      if (!nextRuns.has(schedule)) nextRuns.set(schedule, schedule.nextAfter(now));
      next.push({ triggerId: trigger.id, nextRunAt: nextRuns.get(schedule)! });
    }
    await this.firing.fireMany(em, slots, false, now);
    await this.repository.advance(em, next);
    return due.length;
  }

  /** The trigger's slots from its stored next run up to now, as its misfire policy keeps them. */
  private slotsToFire(trigger: DueTriggerRow, { slots, skipped: truncated }: Occurrences, now: Date): Date[] {
    const plan = planSlots(slots, now, trigger.misfire_policy, this.config.misfireThresholdMs, truncated);
    if (plan.skipped > 0) {
      this.metrics.skippedSlots.inc(plan.skipped);
      this.logger.warn(`trigger ${trigger.id}: ${plan.skipped} missed slot(s) not fired (${trigger.misfire_policy})`);
    }
    return plan.fire;
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

function firingOf(trigger: DueTriggerRow): FiringTrigger {
  return {
    id: trigger.id,
    tenantId: trigger.tenant_id,
    applicationId: trigger.application_id,
    name: trigger.name,
    cronExpression: trigger.cron_expression,
    runKey: trigger.run_key,
    backendId: trigger.backend_id,
    flowId: trigger.flow_id,
  };
}
