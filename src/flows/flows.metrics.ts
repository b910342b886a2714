import { Injectable } from '@nestjs/common';
import { Counter, Gauge, Histogram } from 'prom-client';
import { MetricsRegistry } from '../observability/metrics.js';

@Injectable()
export class FlowMetrics {
  readonly started: Counter<'trigger'>;
  readonly finished: Counter<'status'>;
  readonly activations: Counter<'outcome'>;
  readonly stepDuration: Histogram<'type'>;
  readonly waiting: Gauge<'flow_id'>;

  constructor(metrics: MetricsRegistry) {
    const registers = [metrics.registry];
    this.started = new Counter({
      name: 'switchyard_executions_started_total',
      help: 'Executions started, by trigger type (callback, cron, api)',
      labelNames: ['trigger'],
      registers,
    });
    this.finished = new Counter({
      name: 'switchyard_executions_finished_total',
      help: 'Executions that completed, failed or were cancelled',
      labelNames: ['status'],
      registers,
    });
    this.activations = new Counter({
      name: 'switchyard_activations_total',
      help: 'Activation calls by outcome (activated, ignored, started, error code)',
      labelNames: ['outcome'],
      registers,
    });
    this.stepDuration = new Histogram({
      name: 'switchyard_flow_step_advance_seconds',
      help: 'Time to advance one execution through its runnable steps (one claim)',
      labelNames: ['type'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    this.waiting = new Gauge({
      name: 'switchyard_executions_waiting',
      help: 'Executions waiting at a callback step, by flow (top flows; all replicas)',
      labelNames: ['flow_id'],
      registers,
    });
  }
}
