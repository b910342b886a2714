import { type BeforeApplicationShutdown, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { EntityManager } from '@mikro-orm/postgresql';
import { Clock } from '../common/clock.js';
import { AppConfig } from '../config/app-config.js';
import { DatabaseConnection } from '../database/database.module.js';
import { NotificationListener } from '../database/notification-listener.js';
import { ExecutionEngine } from './execution-engine.js';
import { FlowMetrics } from './flows.metrics.js';
import { EXECUTION_CHANNEL, FlowsRepository } from './flows.repository.js';

const BATCH_SIZE = 50;
const MAX_BATCHES_PER_PASS = 20;
const INTERVAL_NAME = 'flow-worker';
const METRICS_INTERVAL_MS = 5_000;

/**
 * Advances executions on every replica: running ones whose next step is due (just started or
 * activated, a delay elapsed, a delivery succeeded) and waiting ones whose timeout passed. Each
 * batch is one transaction holding the claimed rows' locks; NOTIFY wakes it without polling.
 */
@Injectable()
export class FlowWorker implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(FlowWorker.name);
  private listener: NotificationListener | null = null;
  private pass: Promise<void> | null = null;
  private again = false;
  private stopping = false;
  private lastMetricsAt = 0;
  /** Whether the next pass looks for passed deadlines (see timeoutBatch). */
  private deadlinesToCheck = true;

  constructor(
    private readonly em: EntityManager,
    private readonly repository: FlowsRepository,
    private readonly engine: ExecutionEngine,
    private readonly metrics: FlowMetrics,
    private readonly clock: Clock,
    private readonly config: AppConfig,
    private readonly connection: DatabaseConnection,
    private readonly scheduler: SchedulerRegistry,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    if (!this.config.schedulerEnabled) return;
    if (!this.connection.isEmbedded) {
      this.listener = new NotificationListener(await this.connection.url(), EXECUTION_CHANNEL, () => void this.run());
      await this.listener.start();
    }
    this.scheduler.addInterval(
      INTERVAL_NAME,
      setInterval(() => void this.wake(), this.config.schedulerTickMs),
    );
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopping = true;
    if (this.scheduler.doesExist('interval', INTERVAL_NAME)) this.scheduler.deleteInterval(INTERVAL_NAME);
    await this.listener?.stop();
    await this.pass;
  }

  /**
   * Runs a pass now (or right after the one in progress) that also looks for passed deadlines: the
   * tick calls it, and tests, to drive time. A NOTIFY (something became runnable) runs one without.
   */
  wake(): Promise<void> {
    this.deadlinesToCheck = true;
    return this.run();
  }

  private run(): Promise<void> {
    if (this.pass) {
      this.again = true;
      return this.pass;
    }
    this.pass = this.passes().finally(() => (this.pass = null));
    return this.pass;
  }

  private async passes(): Promise<void> {
    do {
      this.again = false;
      try {
        for (let batch = 0; batch < MAX_BATCHES_PER_PASS && !this.stopping; batch++) {
          const advanced = await this.advanceBatch();
          const timedOut = await this.timeoutBatch();
          if (advanced < BATCH_SIZE && timedOut < BATCH_SIZE) break;
        }
        if (Date.now() - this.lastMetricsAt >= METRICS_INTERVAL_MS) {
          this.lastMetricsAt = Date.now();
          await this.refreshWaitingGauge();
        }
      } catch (error) {
        this.logger.warn(`flow worker pass failed: ${(error as Error).message}`);
      }
    } while (this.again && !this.stopping);
  }

  /** Waiting executions by flow, for the biggest flows only (label cardinality stays bounded). */
  private async refreshWaitingGauge(): Promise<void> {
    const counts = await this.repository.waitingByFlow(this.em.fork(), 50);
    this.metrics.waiting.reset();
    for (const { flow_id, waiting } of counts) this.metrics.waiting.set({ flow_id }, Number(waiting));
  }

  private advanceBatch(): Promise<number> {
    return this.em.fork().transactional(async (em) => {
      const rows = await this.repository.claimRunnable(em, this.clock.now(), BATCH_SIZE);
      if (rows.length > 0) await this.engine.advance(em, rows);
      return rows.length;
    });
  }

  /**
   * Deadlines are looked for on the tick (wake), not on every NOTIFY: each activation wakes the
   * worker, and an empty timeout pass per wake-up was three more statements per activation. A full
   * batch means more are due, so the next batch looks again.
   */
  private timeoutBatch(): Promise<number> {
    if (!this.deadlinesToCheck) return Promise.resolve(0);
    this.deadlinesToCheck = false;
    return this.em.fork().transactional(async (em) => {
      const rows = await this.repository.claimTimedOut(em, this.clock.now(), BATCH_SIZE);
      for (const row of rows) await this.engine.timeOut(em, row);
      if (rows.length === BATCH_SIZE) this.deadlinesToCheck = true;
      return rows.length;
    });
  }
}
