import { Module } from '@nestjs/common';
import { RegistryModule } from '../registry/registry.module.js';
import { SecretsModule } from '../secrets/secrets.module.js';
import { DeliveriesController } from './deliveries.controller.js';
import { DeliveryApiService } from './delivery-api.service.js';
import { DeliveryOriginsService } from './delivery-origins.service.js';
import { DeliveryRetention } from './delivery-retention.js';
import { DeliveryOutcomes } from './delivery-outcomes.js';
import { DeliveryMetrics } from './delivery.metrics.js';
import { DeliveryRepository } from './delivery.repository.js';
import { DeliveryService } from './delivery.service.js';
import { DeliveryWorker } from './delivery.worker.js';
import { WebhookSender } from './webhook-sender.js';

@Module({
  imports: [RegistryModule, SecretsModule],
  controllers: [DeliveriesController],
  providers: [
    DeliveryRepository,
    DeliveryOutcomes,
    DeliveryMetrics,
    DeliveryService,
    DeliveryApiService,
    DeliveryOriginsService,
    DeliveryRetention,
    DeliveryWorker,
    WebhookSender,
  ],
  exports: [DeliveryService, DeliveryOutcomes, DeliveryOriginsService],
})
export class DeliveryModule {}
