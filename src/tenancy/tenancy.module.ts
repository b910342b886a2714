import { Module } from '@nestjs/common';
import { SecretsModule } from '../secrets/secrets.module.js';
import { TenancyController } from './tenancy.controller.js';
import { TenancyService } from './tenancy.service.js';

@Module({
  imports: [SecretsModule],
  controllers: [TenancyController],
  providers: [TenancyService],
  exports: [TenancyService],
})
export class TenancyModule {}
