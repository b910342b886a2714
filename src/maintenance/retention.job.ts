import { randomUUID } from 'node:crypto';
import { type BeforeApplicationShutdown, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { EntityManager } from '@mikro-orm/postgresql';
import { Counter, Gauge } from 'prom-client';
import { Clock } from '../common/clock.js';
import { AppConfig } from '../config/app-config.js';
import { MetricsRegistry } from '../observability/metrics.js';
import { RetentionRegistry } from './retention.registry.js';

const BATCH_SIZE = 500;
const CHECK_INTERVAL_MS = 5 * 60_000;
const LEASE_SECONDS = 120;
const INTERVAL_NAME = 'retention';

/**
 * Purges finished work older than RETENTION_DAYS in small batches (short transactions, each an
 * index range), on whichever replica claims the `retention` lease row, at most once an hour.
 * Waiting executions, pending and parked deliveries are never touched (the modules' purges only
 * select finished rows).
 */
@Injectable()
export class RetentionJob implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(RetentionJob.name);
  private readonly purged: Counter<'table'>;
  private readonly lastRun: Gauge;
  private running: Promise<Record<string, number> | null> | null = null;
  private stopping = false;

  constructor(
    private readonly em: EntityManager,
    private readonly registry: RetentionRegistry,
    private readonly clock: Clock,
    private readonly config: AppConfig,
    private readonly scheduler: SchedulerRegistry,
    metrics: MetricsRegistry,
  ) {
    this.purged = new Counter({
      name: 'switchyard_retention_purged_total',
      help: 'Rows purged by retention, by table',
      labelNames: ['table'],
      registers: [metrics.registry],
    });
    this.lastRun = new Gauge({
      name: 'switchyard_retention_last_run_timestamp_seconds',
      help: 'When this replica last finished a retention run',
      registers: [metrics.registry],
    });
  }

  onApplicationBootstrap(): void {
    if (!this.config.schedulerEnabled) return;
    this.scheduler.addInterval(
      INTERVAL_NAME,
      setInterval(() => void this.runIfDue(), CHECK_INTERVAL_MS),
    );
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopping = true;
    if (this.scheduler.doesExist('interval', INTERVAL_NAME)) this.scheduler.deleteInterval(INTERVAL_NAME);
    await this.running;
  }

  /** Runs a purge if no replica ran one in the last hour and none holds the lease; else null. */
  runIfDue(force = false): Promise<Record<string, number> | null> {
    this.running ??= this.run(force).finally(() => (this.running = null));
    return this.running;
  }

  private async run(force: boolean): Promise<Record<string, number> | null> {
    const holder = randomUUID();
    try {
      if (!(await this.claim(holder, force))) return null;
      const cutoff = new Date(this.clock.now().getTime() - this.config.retentionDays * 86_400_000);
      const totals: Record<string, number> = {};
      for (const [table, purge] of this.registry.entries()) {
        totals[table] = 0;
        for (;;) {
          if (this.stopping) break;
          const deleted = await purge(cutoff, BATCH_SIZE);
          totals[table] += deleted;
          this.purged.inc({ table }, deleted);
          if (deleted < BATCH_SIZE) break;
          await this.extend(holder);
          if (totals[table] % (BATCH_SIZE * 20) === 0) {
            this.logger.log(`retention: ${totals[table]} rows purged from ${table} so far`);
          }
        }
      }
      await this.release(holder);
      this.lastRun.set(Date.now() / 1000);
      this.logger.log(`retention (older than ${cutoff.toISOString()}): ${JSON.stringify(totals)}`);
      return totals;
    } catch (error) {
      this.logger.warn(`retention run failed: ${(error as Error).message}`);
      return null;
    }
  }

  private async claim(holder: string, force: boolean): Promise<boolean> {
    const rows = await this.em.fork().execute<{ name: string }[]>(
      `update maintenance_leases
          set leased_until = now() + make_interval(secs => ?), leased_by = ?
        where name = 'retention' and leased_until < now()
          and (? or last_finished_at is null or last_finished_at < now() - interval '1 hour')
       returning name`,
      [LEASE_SECONDS, holder, force],
    );
    return rows.length === 1;
  }

  private async extend(holder: string): Promise<void> {
    await this.em
      .fork()
      .execute(
        `update maintenance_leases set leased_until = now() + make_interval(secs => ?) where name = 'retention' and leased_by = ?`,
        [LEASE_SECONDS, holder],
      );
  }

  private async release(holder: string): Promise<void> {
    await this.em.fork().execute(
      `update maintenance_leases set leased_until = now(), last_finished_at = now(), leased_by = null
          where name = 'retention' and leased_by = ?`,
      [holder],
    );
  }
}
