import { Module } from '@nestjs/common';
import { systemResolver } from '../http/address-guard.js';
import { SecretsModule } from '../secrets/secrets.module.js';
import { BackendsController } from './backends.controller.js';
import { BackendsRepository } from './backends.repository.js';
import { BackendsService } from './backends.service.js';
import { CALLBACK_URL_RESOLVER, CallbackUrlPolicy } from './callback-url.policy.js';
import { ReEnabledHooks } from './re-enabled-hooks.js';
import { RegistryService } from './registry.service.js';

/** Backends that machine users register; other modules reach them only through RegistryService. */
@Module({
  imports: [SecretsModule],
  controllers: [BackendsController],
  providers: [
    BackendsRepository,
    BackendsService,
    CallbackUrlPolicy,
    { provide: CALLBACK_URL_RESOLVER, useValue: systemResolver },
    ReEnabledHooks,
    RegistryService,
  ],
  exports: [RegistryService],
})
export class RegistryModule {}
