import { Global, Module } from '@nestjs/common';
import { Clock } from '../common/clock.js';
import { MetricsRegistry } from './metrics.js';

@Global()
@Module({
  providers: [MetricsRegistry, Clock],
  exports: [MetricsRegistry, Clock],
})
export class ObservabilityModule {}
