import { Controller, Get } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import {
  HealthCheck,
  type HealthCheckResult,
  HealthCheckService,
  type HealthIndicatorResult,
  HealthIndicatorService,
} from '@nestjs/terminus';
import { MikroORM } from '@mikro-orm/postgresql';
import { Public } from '../auth/auth.decorators.js';
import { pendingMigrations } from '../database/migrate.js';

const CHECK_TIMEOUT_MS = 2_000;

@ApiTags('operations')
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly indicator: HealthIndicatorService,
    private readonly orm: MikroORM,
  ) {}

  @Public()
  @Get('live')
  @ApiOperation({ summary: 'The process is up (no dependency is checked)' })
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  @Public()
  @Get('ready')
  @HealthCheck()
  @ApiOperation({ summary: 'The database answers and every migration is applied; 503 otherwise' })
  ready(): Promise<HealthCheckResult> {
    return this.health.check([() => this.database(), () => this.migrations()]);
  }

  private async database(): Promise<HealthIndicatorResult> {
    const check = this.indicator.check('database');
    try {
      await withTimeout(this.orm.em.fork().execute('select 1'), CHECK_TIMEOUT_MS);
      return check.up();
    } catch (error) {
      return check.down({ message: (error as Error).message });
    }
  }

  private async migrations(): Promise<HealthIndicatorResult> {
    const check = this.indicator.check('migrations');
    try {
      const pending = await withTimeout(pendingMigrations(this.orm), CHECK_TIMEOUT_MS);
      return pending.length === 0 ? check.up() : check.down({ pending });
    } catch (error) {
      return check.down({ message: (error as Error).message });
    }
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
