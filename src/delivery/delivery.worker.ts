import {
  type BeforeApplicationShutdown,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { SchedulerRegistry } from '@nestjs/schedule';
import { EntityManager } from '@mikro-orm/postgresql';
import { USER_AGENT } from '../common/version.js';
import { AppConfig } from '../config/app-config.js';
import { DatabaseConnection } from '../database/database.module.js';
import { RegistryService } from '../registry/registry.service.js';
import { SigningSecretsService } from '../secrets/signing-secrets.service.js';
import { NotificationListener } from '../database/notification-listener.js';
import { DeliveryMetrics } from './delivery.metrics.js';
import { DELIVERY_CHANNEL, DeliveryRepository, type DeliveryRow } from './delivery.repository.js';
import { type AttemptToRecord, DeliveryService } from './delivery.service.js';
import { WebhookSender } from './webhook-sender.js';
import { signWebhook } from './webhook-signer.js';

interface InFlight {
  row: DeliveryRow;
  leaseToken: string;
  target: string;
  abort: AbortController;
  done: Promise<void>;
}

interface ResolvedTarget {
  url: string;
  secrets: string[];
  enabled: boolean;
  /** The backend's own attempt timeout; null: DELIVERY_TIMEOUT_MS. */
  timeoutMs: number | null;
  expiresAt: number;
}

/**
 * Signing targets are cached this long per replica: a rotated secret, a new callback URL or a
 * disabled backend applies within it everywhere. Short, because a receiver that switches to the
 * new secret right after a rotation should see it signed at once; long enough that a busy backend
 * costs one lookup per second rather than one per delivery.
 */
const TARGET_CACHE_MS = 1_000;
const STATS_INTERVAL_MS = 5_000;
const POLL_INTERVAL_NAME = 'delivery-poll';
/** Results written per transaction, and transactions writing results at once (each holds a pooled connection). */
const RESULT_BATCH = 32;
const RECORDERS = 2;

/**
 * Runs on every replica: claims due deliveries in batches (SKIP LOCKED, so replicas share the
 * queue without coordination), sends them with at most DELIVERY_CONCURRENCY in flight and at
 * most DELIVERY_PER_TARGET_CONCURRENCY per target, and records each result.
 */
@Injectable()
export class DeliveryWorker implements OnApplicationBootstrap, OnModuleDestroy, BeforeApplicationShutdown {
  private readonly logger = new Logger(DeliveryWorker.name);
  private readonly inFlight = new Map<string, InFlight>();
  private readonly perTarget = new Map<string, number>();
  private readonly targets = new Map<string, ResolvedTarget>();
  private listener: NotificationListener | null = null;
  private claiming = false;
  /** The latest claim loop, so shutdown can wait for rows it is about to lease. */
  private claimed: Promise<void> = Promise.resolve();
  private claimAgain = false;
  /** A poll still running when the interval fires again is not joined by another. */
  private polling = false;
  private stopping = false;
  private lastStatsAt = 0;
  /** Results waiting to be written, and recordLoops writing them (see record). */
  private readonly results: { item: AttemptToRecord; resolve: () => void; reject: (error: unknown) => void }[] = [];
  private recorders = 0;

  constructor(
    private readonly em: EntityManager,
    private readonly repository: DeliveryRepository,
    private readonly deliveries: DeliveryService,
    private readonly registry: RegistryService,
    private readonly secrets: SigningSecretsService,
    private readonly sender: WebhookSender,
    private readonly metrics: DeliveryMetrics,
    private readonly config: AppConfig,
    private readonly connection: DatabaseConnection,
    private readonly scheduler: SchedulerRegistry,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    if (!this.config.deliveryWorkerEnabled) {
      // An API-only replica: it enqueues (the outbox commits with the firing) and other replicas send.
      // Marked as stopping so that nothing (wake, poll) ever claims here.
      this.stopping = true;
      this.logger.log('delivery worker disabled (DELIVERY_WORKER_ENABLED=false): this replica sends no deliveries');
      return;
    }
    if (!this.connection.isEmbedded) {
      this.listener = new NotificationListener(await this.connection.url(), DELIVERY_CHANNEL, () => this.wake());
      await this.listener.start();
    }
    this.scheduler.addInterval(
      POLL_INTERVAL_NAME,
      setInterval(() => void this.poll(), this.config.deliveryPollMs),
    );
    this.wake();
  }

  /**
   * Shutdown, first phase: stop claiming. Nest runs every module's onModuleDestroy before any
   * beforeApplicationShutdown, and those run one module after another: stopped only there, this
   * worker went on claiming while the flow worker and the scheduler finished their passes (up to
   * 2 s after SIGTERM, measured on a loaded machine).
   */
  async onModuleDestroy(): Promise<void> {
    this.stopping = true;
    if (this.scheduler.doesExist('interval', POLL_INTERVAL_NAME)) this.scheduler.deleteInterval(POLL_INTERVAL_NAME);
    await this.listener?.stop();
  }

  /** Second phase: let in-flight attempts finish for SHUTDOWN_GRACE_MS; release the rest. */
  async beforeApplicationShutdown(): Promise<void> {
    // A claim already under way returns leased rows; they must be in the snapshot below, or their
    // leases would stay taken until they expire instead of being finished or released.
    await this.claimed;
    const pending = [...this.inFlight.values()];
    if (pending.length === 0) return;
    this.logger.log(`shutting down: waiting up to ${this.config.shutdownGraceMs} ms for ${pending.length} deliveries`);
    const settled = Promise.allSettled(pending.map((flight) => flight.done));
    if (await finishesWithin(settled, this.config.shutdownGraceMs)) return;
    const remaining = [...this.inFlight.values()];
    for (const flight of remaining) flight.abort.abort();
    await finishesWithin(Promise.allSettled(remaining.map((flight) => flight.done)), 5_000);
    // Released rows are due at once: wake the other replicas now rather than at their next poll.
    await this.repository.notify(this.em.fork()).catch((error: unknown) => {
      this.logger.warn(`could not notify other replicas: ${(error as Error).message}`);
    });
    this.logger.log(`released ${remaining.length} in-flight deliveries to other replicas`);
  }

  /** Claims as much due work as there is capacity for; coalesces concurrent wake-ups. */
  wake(): void {
    if (this.stopping) return;
    if (this.claiming) {
      this.claimAgain = true;
      return;
    }
    this.claimed = this.claimLoop();
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /**
   * One at a time: while the database stalls (a lock on deliveries, a failover), overlapping polls
   * would each hold a pooled connection until none were left for recording results.
   */
  private async poll(): Promise<void> {
    if (this.stopping || this.polling) return;
    this.polling = true;
    try {
      const reclaimed = await this.reclaimExpiredLeases();
      if (reclaimed > 0) this.logger.warn(`reclaimed ${reclaimed} deliveries whose lease expired`);
      if (Date.now() - this.lastStatsAt >= STATS_INTERVAL_MS) {
        this.lastStatsAt = Date.now();
        const stats = await this.repository.queueStats(this.em.fork());
        this.metrics.queueDepth.set(stats.due);
        this.metrics.oldestDueAge.set(stats.oldestDueAgeSeconds);
      }
    } catch (error) {
      this.logger.warn(`delivery poll failed: ${(error as Error).message}`);
    } finally {
      this.polling = false;
    }
    this.wake();
  }

  /**
   * Hands back deliveries whose replica died mid-attempt, and writes that attempt into their log in the
   * same transaction: it was counted when claimed, and the log should show every counted attempt.
   */
  private async reclaimExpiredLeases(): Promise<number> {
    return this.em.fork().transactional(async (em) => {
      const reclaimed = await this.repository.reclaimExpiredLeases(em);
      for (const row of reclaimed) {
        await this.repository.recordAttempt(em, {
          deliveryId: row.id,
          tenantId: row.tenant_id,
          attempt: row.attempts,
          // Made by the replica that held the lease, not by this one.
          leaseToken: row.expired_lease,
          statusCode: null,
          // Unknown: at least the lease (replicas share DELIVERY_LEASE_MS), since nobody answered within it.
          durationMs: this.config.deliveryLeaseMs,
          responseExcerpt: null,
          error: 'lease expired: the replica sending this attempt stopped before recording its outcome',
        });
      }
      return reclaimed.length;
    });
  }

  private async claimLoop(): Promise<void> {
    this.claiming = true;
    try {
      do {
        this.claimAgain = false;
        const capacity = this.config.deliveryConcurrency - this.inFlight.size;
        if (capacity <= 0 || this.stopping) break;
        const { leaseToken, rows } = await this.repository.claimDue(this.em.fork(), {
          capacity,
          perTarget: this.config.deliveryPerTargetConcurrency,
          busyTargets: this.busyTargets(),
          leaseMs: this.config.deliveryLeaseMs,
        });
        for (const row of rows) this.start(row, leaseToken);
        if (rows.length === capacity) this.claimAgain = true;
      } while (this.claimAgain && !this.stopping);
    } catch (error) {
      this.logger.warn(`claiming deliveries failed: ${(error as Error).message}`);
    } finally {
      // Cleared in the same tick as the last claimAgain check, so no wake-up falls in between.
      this.claiming = false;
    }
  }

  private busyTargets(): string[] {
    return [...this.perTarget].filter(([, count]) => count >= this.config.deliveryPerTargetConcurrency).map(([t]) => t);
  }

  private start(row: DeliveryRow, leaseToken: string): void {
    const target = row.backend_id ?? row.application_id!;
    const abort = new AbortController();
    this.perTarget.set(target, (this.perTarget.get(target) ?? 0) + 1);
    const done = this.deliver(row, leaseToken, abort.signal)
      .catch((error: unknown) => {
        // The lease expires and another replica retries; nothing is lost.
        this.logger.error(`delivery ${row.id} could not be recorded: ${(error as Error).message}`);
      })
      .finally(() => {
        this.inFlight.delete(row.id);
        const left = (this.perTarget.get(target) ?? 1) - 1;
        if (left > 0) this.perTarget.set(target, left);
        else this.perTarget.delete(target);
        this.metrics.inFlight.set(this.inFlight.size);
        this.wake();
      });
    this.inFlight.set(row.id, { row, leaseToken, target, abort, done });
    this.metrics.inFlight.set(this.inFlight.size);
  }

  private async deliver(row: DeliveryRow, leaseToken: string, signal: AbortSignal): Promise<void> {
    let target = await this.resolveTarget(row);
    // A cached "disabled" may predate a re-enable that just re-queued this very delivery.
    if (target && !target.enabled) target = await this.resolveTarget(row, true);
    if (!target) return this.deliveries.abandon(row, leaseToken, 'the backend was deleted');
    if (!target.enabled) return this.deliveries.park(row, leaseToken, 'the backend is disabled');
    const headers: Record<string, string> = {
      ...row.headers,
      'content-type': 'application/json',
      'user-agent': USER_AGENT,
      ...signWebhook({
        webhookId: row.webhook_id,
        timestampSeconds: Math.floor(Date.now() / 1000),
        body: row.body,
        secrets: target.secrets,
        hexHeaderName: this.config.signatureHeader,
      }),
    };
    const timeoutMs = target.timeoutMs ?? this.config.deliveryTimeoutMs;
    // The claim's lease is sized for DELIVERY_TIMEOUT_MS; a longer backend timeout gets the same margin on top, or
    // another replica would reclaim the row and send it again mid-attempt. A lease lost meanwhile: not ours to send.
    const leaseMs = this.config.deliveryLeaseMs - this.config.deliveryTimeoutMs + timeoutMs;
    if (leaseMs > this.config.deliveryLeaseMs) {
      if (!(await this.repository.extendLease(this.em.fork(), row.id, leaseToken, leaseMs))) return;
    }
    const result = await this.sender.send(
      { url: target.url, method: row.method, headers, body: row.body, timeoutMs },
      signal,
    );
    if (result.statusCode === 410) this.targets.delete(row.backend_id ?? row.application_id!);
    await this.record({ delivery: row, leaseToken, result, release: signal.aborted && this.stopping });
  }

  /**
   * Queues a result for the recorders, which write whatever has accumulated in one transaction: one
   * commit per batch instead of one per delivery (the `delivery` bench: ~15-20 % less CPU in this
   * process and in PostgreSQL per delivery). Nothing waits for a timer: on an idle system a batch is
   * the one result, written at once.
   */
  private record(item: AttemptToRecord): Promise<void> {
    return new Promise((resolve, reject) => {
      this.results.push({ item, resolve, reject });
      if (this.recorders < RECORDERS) void this.recordLoop();
    });
  }

  private async recordLoop(): Promise<void> {
    this.recorders++;
    try {
      while (this.results.length > 0) {
        const batch = this.results.splice(0, RESULT_BATCH);
        try {
          await this.deliveries.recordResults(batch.map((queued) => queued.item));
          for (const queued of batch) queued.resolve();
        } catch {
          // The batch wrote nothing: record one by one, so one result that cannot be written (or a
          // deadlock between batches' outcome handlers) does not take the others down.
          for (const { item, resolve, reject } of batch) {
            await this.deliveries
              .recordResult(item.delivery, item.leaseToken, item.result, item.release)
              .then(resolve, reject);
          }
        }
      }
    } finally {
      this.recorders--;
    }
  }

  private async resolveTarget(row: DeliveryRow, bypassCache = false): Promise<ResolvedTarget | null> {
    const cached = bypassCache ? undefined : this.targets.get(row.backend_id ?? row.application_id!);
    const fresh = cached && cached.expiresAt > Date.now() ? cached : await this.loadTarget(row);
    if (!fresh) return null;
    return { ...fresh, url: row.backend_id && !row.explicit_url ? fresh.url : row.url };
  }

  private async loadTarget(row: DeliveryRow): Promise<ResolvedTarget | null> {
    const key = row.backend_id ?? row.application_id!;
    let resolved: ResolvedTarget | null;
    if (row.backend_id) {
      const backend = await this.registry.getDeliveryTarget(row.backend_id);
      resolved = backend && {
        url: backend.callbackUrl,
        secrets: backend.secrets,
        enabled: backend.enabled,
        timeoutMs: backend.timeoutMs,
        expiresAt: Date.now() + TARGET_CACHE_MS,
      };
    } else {
      const secrets = await this.secrets.validSecrets(row.application_id!);
      resolved = { url: row.url, secrets, enabled: true, timeoutMs: null, expiresAt: Date.now() + TARGET_CACHE_MS };
    }
    if (resolved) this.targets.set(key, resolved);
    if (this.targets.size > 10_000) this.targets.clear();
    return resolved;
  }
}

async function finishesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const result = await Promise.race([promise.then(() => true), timeout]);
  clearTimeout(timer);
  return result;
}
