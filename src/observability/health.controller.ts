import { Controller, Get, Logger, ServiceUnavailableException } from '@nestjs/common';
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
import { DomainException } from '../common/errors.js';
import { pendingMigrations } from '../database/migrate.js';

const CHECK_TIMEOUT_MS = 2_000;

@ApiTags('operations')
@Controller('health')
export class HealthController {
  private readonly logger = new Logger(HealthController.name);

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
  async ready(): Promise<HealthCheckResult> {
    try {
      return await this.health.check([() => this.database(), () => this.migrations()]);
    } catch (error) {
      if (!(error instanceof ServiceUnavailableException)) throw error;
      throw this.notReady(error.getResponse() as HealthCheckResult);
    }
  }

  /**
   * The error body says which checks failed (and which migrations are pending), so an operator or a
   * load balancer's log shows why; the driver's own message, which can name internal addresses, goes to
   * the log only, since this route is public.
   */
  private notReady(result: HealthCheckResult): DomainException {
    const failed = result.error ?? {};
    const checks = Object.fromEntries(
      Object.entries(result.details).map(([name, { status, pending }]) =>
        pending === undefined ? [name, { status }] : [name, { status, pending }],
      ),
    );
    for (const [name, check] of Object.entries(failed))
      if (check?.message !== undefined) this.logger.warn(`not ready: ${name}: ${String(check.message)}`);
    return new DomainException(
      'UNAVAILABLE',
      `Not ready: ${Object.keys(failed).join(', ') || 'a check'} down`,
      { checks },
      { 'retry-after': '1' },
    );
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
