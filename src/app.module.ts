import { type DynamicModule, Module } from '@nestjs/common';
import { APP_FILTER, APP_GUARD, APP_PIPE } from '@nestjs/core';
import { ScheduleModule } from '@nestjs/schedule';
import { TerminusModule } from '@nestjs/terminus';
import { ThrottlerModule } from '@nestjs/throttler';
import { LoggerModule } from 'nestjs-pino';
import { AuthGuard } from './auth/auth.guard.js';
import { AuthModule } from './auth/auth.module.js';
import { AllExceptionsFilter } from './common/exception.filter.js';
import { RequestValidationPipe } from './common/validation.js';
import type { AppConfig } from './config/app-config.js';
import { AppConfigModule } from './config/config.module.js';
import { RateLimitGuard } from './http/rate-limit.guard.js';
import { DatabaseModule } from './database/database.module.js';
import { DeliveryModule } from './delivery/delivery.module.js';
import { FlowsModule } from './flows/flows.module.js';
import { MaintenanceModule } from './maintenance/maintenance.module.js';
import { HealthController } from './observability/health.controller.js';
import { loggingParams } from './observability/logging.js';
import { MetricsController } from './observability/metrics.controller.js';
import { ObservabilityModule } from './observability/observability.module.js';
import { RegistryModule } from './registry/registry.module.js';
import { TenancyModule } from './tenancy/tenancy.module.js';
import { TriggersModule } from './triggers/triggers.module.js';

@Module({})
export class AppModule {
  static forRoot(config: AppConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        AppConfigModule.forRoot(config),
        LoggerModule.forRoot(loggingParams(config)),
        ObservabilityModule,
        ScheduleModule.forRoot(),
        ThrottlerModule.forRoot({
          throttlers: [{ name: 'default', ttl: 60_000, limit: config.rateLimitPerMinute ?? Number.MAX_SAFE_INTEGER }],
        }),
        MaintenanceModule,
        DatabaseModule,
        TerminusModule,
        AuthModule,
        TenancyModule,
        RegistryModule,
        DeliveryModule,
        TriggersModule,
        FlowsModule,
      ],
      controllers: [HealthController, MetricsController],
      providers: [
        { provide: APP_GUARD, useClass: AuthGuard },
        ...(config.rateLimitPerMinute === null ? [] : [{ provide: APP_GUARD, useClass: RateLimitGuard }]),
        { provide: APP_PIPE, useClass: RequestValidationPipe },
        { provide: APP_FILTER, useClass: AllExceptionsFilter },
      ],
    };
  }
}
