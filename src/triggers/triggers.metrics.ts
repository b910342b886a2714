import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram } from 'prom-client';
import { MetricsRegistry } from '../observability/metrics.js';

@Injectable()
export class TriggerMetrics {
  readonly fires: Counter<'routing' | 'manual'>;
  readonly fireLag: Histogram;
  readonly dueUnfired: Gauge;
  readonly skippedSlots: Counter;
  readonly fireFailures: Counter;

  constructor(metrics: MetricsRegistry) {
    const registers = [metrics.registry];
    this.fires = new Counter({
      name: 'switchyard_trigger_fires_total',
      help: 'Cron trigger firings by routing (DELIVERIES, UNROUTED, FLOW_STARTED) and manual',
      labelNames: ['routing', 'manual'],
      registers,
    });
    this.fireLag = new Histogram({
      name: 'switchyard_trigger_fire_lag_seconds',
      help: 'Fired time minus scheduled time of scheduled firings',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300],
      registers,
    });
    this.dueUnfired = new Gauge({
      name: 'switchyard_triggers_due_unfired',
      help: 'Enabled triggers whose next run is due but not yet fired (all replicas)',
      registers,
    });
    this.skippedSlots = new Counter({
      name: 'switchyard_trigger_skipped_slots_total',
      help: 'Missed slots not fired because of the misfire policy',
      registers,
    });
    this.fireFailures = new Counter({
      name: 'switchyard_trigger_fire_failures_total',
      help: 'Triggers that failed to fire; each stays due and is retried after a pause (see the log)',
      registers,
    });
  }
}
