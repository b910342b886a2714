import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram } from 'prom-client';
import { MetricsRegistry } from '../observability/metrics.js';

@Injectable()
export class DeliveryMetrics {
  readonly enqueued: Counter;
  readonly attempts: Counter<'result'>;
  readonly finished: Counter<'status'>;
  readonly attemptDuration: Histogram;
  readonly inFlight: Gauge;
  readonly queueDepth: Gauge;
  readonly oldestDueAge: Gauge;

  constructor(metrics: MetricsRegistry) {
    const registers = [metrics.registry];
    this.enqueued = new Counter({
      name: 'switchyard_deliveries_enqueued_total',
      help: 'Deliveries enqueued',
      registers,
    });
    this.attempts = new Counter({
      name: 'switchyard_delivery_attempts_total',
      help: 'Delivery attempts by result (success, failure)',
      labelNames: ['result'],
      registers,
    });
    this.finished = new Counter({
      name: 'switchyard_deliveries_finished_total',
      help: 'Deliveries that reached SUCCEEDED, DEAD or PARKED',
      labelNames: ['status'],
      registers,
    });
    this.attemptDuration = new Histogram({
      name: 'switchyard_delivery_attempt_duration_seconds',
      help: 'Duration of one delivery attempt (connect to last byte read)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.inFlight = new Gauge({
      name: 'switchyard_deliveries_in_flight',
      help: 'Deliveries this replica is sending right now',
      registers,
    });
    this.queueDepth = new Gauge({
      name: 'switchyard_delivery_queue_due',
      help: 'Deliveries due now and not yet claimed (all replicas)',
      registers,
    });
    this.oldestDueAge = new Gauge({
      name: 'switchyard_delivery_oldest_due_age_seconds',
      help: 'How long the oldest due delivery has been waiting (all replicas)',
      registers,
    });
  }
}
