import { timingSafeEqual } from 'node:crypto';
import { Controller, Get, Headers, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { Public } from '../auth/auth.decorators.js';
import { DomainException } from '../common/errors.js';
import { AppConfig } from '../config/app-config.js';
import { MetricsRegistry } from './metrics.js';

@ApiExcludeController()
@Controller('metrics')
export class MetricsController {
  constructor(
    private readonly metrics: MetricsRegistry,
    private readonly config: AppConfig,
  ) {}

  @Public()
  @Get()
  async scrape(@Headers('authorization') authorization: string | undefined, @Res() reply: FastifyReply): Promise<void> {
    if (this.config.metricsToken !== null && !this.isMetricsToken(authorization)) {
      throw new DomainException('UNAUTHENTICATED', 'This endpoint needs Authorization: Bearer $METRICS_TOKEN');
    }
    void reply.header('content-type', this.metrics.registry.contentType).send(await this.metrics.registry.metrics());
  }

  private isMetricsToken(authorization: string | undefined): boolean {
    const expected = Buffer.from(`Bearer ${this.config.metricsToken}`);
    const given = Buffer.from(authorization ?? '');
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}
