import { Module } from '@nestjs/common';
import { DeliveryModule } from '../delivery/delivery.module.js';
import { RegistryModule } from '../registry/registry.module.js';
import { TenancyModule } from '../tenancy/tenancy.module.js';
import { FlowBridge } from './flow-bridge.js';
import { TriggerFiringService } from './trigger-firing.service.js';
import { TriggerRunsRetention } from './trigger-runs-retention.js';
import { TriggerScheduler } from './trigger-scheduler.js';
import { TriggersController } from './triggers.controller.js';
import { TriggerMetrics } from './triggers.metrics.js';
import { TriggersRepository } from './triggers.repository.js';
import { TriggersService } from './triggers.service.js';

@Module({
  imports: [TenancyModule, RegistryModule, DeliveryModule],
  controllers: [TriggersController],
  providers: [
    TriggersRepository,
    TriggerFiringService,
    TriggerScheduler,
    TriggersService,
    TriggerMetrics,
    FlowBridge,
    TriggerRunsRetention,
  ],
  exports: [FlowBridge],
})
export class TriggersModule {}
