import { Module, type OnModuleInit } from '@nestjs/common';
import { DeliveryModule } from '../delivery/delivery.module.js';
import { RegistryModule } from '../registry/registry.module.js';
import { TenancyModule } from '../tenancy/tenancy.module.js';
import { FlowBridge } from '../triggers/flow-bridge.js';
import { TriggersModule } from '../triggers/triggers.module.js';
import { ActivationController } from './activation.controller.js';
import { ActivationService } from './activation.service.js';
import { ExecutionEngine } from './execution-engine.js';
import { FlowCatalog } from './flow-catalog.js';
import { FlowWorker } from './flow-worker.js';
import { FlowsRetention } from './flows-retention.js';
import { FlowsController } from './flows.controller.js';
import { FlowMetrics } from './flows.metrics.js';
import { FlowsRepository } from './flows.repository.js';
import { FlowsService } from './flows.service.js';

@Module({
  imports: [TenancyModule, RegistryModule, DeliveryModule, TriggersModule],
  controllers: [FlowsController, ActivationController],
  providers: [
    FlowsRepository,
    FlowCatalog,
    ExecutionEngine,
    FlowsService,
    ActivationService,
    FlowWorker,
    FlowMetrics,
    FlowsRetention,
  ],
  exports: [FlowsService],
})
export class FlowsModule implements OnModuleInit {
  constructor(
    private readonly bridge: FlowBridge,
    private readonly flows: FlowsService,
  ) {}

  /** Cron triggers with a flowId start executions through this. */
  onModuleInit(): void {
    this.bridge.register({
      flowExists: (tenantId, applicationId, flowId) => this.flows.flowExists(tenantId, applicationId, flowId),
      startFromCron: (em, input) => this.flows.startFromCron(em, input),
    });
  }
}
