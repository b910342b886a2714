import { Global, Module } from '@nestjs/common';
import { RetentionJob } from './retention.job.js';
import { RetentionRegistry } from './retention.registry.js';

@Global()
@Module({
  providers: [RetentionRegistry, RetentionJob],
  exports: [RetentionRegistry],
})
export class MaintenanceModule {}
