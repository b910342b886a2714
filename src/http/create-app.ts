import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyInstance } from 'fastify';
import { Logger } from 'nestjs-pino';
import { AppModule } from '../app.module.js';
import type { AppConfig } from '../config/app-config.js';
import { MetricsRegistry } from '../observability/metrics.js';
import { requestIdFor } from '../observability/logging.js';
import { setupOpenApi } from './openapi.js';

export const BODY_LIMIT_BYTES = 1024 * 1024;

/** Builds the application exactly as production runs it; tests use the same function. */
export async function createApp(config: AppConfig): Promise<NestFastifyApplication> {
  const adapter = new FastifyAdapter({
    bodyLimit: BODY_LIMIT_BYTES,
    trustProxy: config.trustProxy,
    genReqId: requestIdFor,
    routerOptions: { maxParamLength: 500 },
    return503OnClosing: true,
  });
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot(config), adapter, {
    bufferLogs: true,
  });
  app.useLogger(app.get(Logger));
  app.enableShutdownHooks();
  installFastifyHooks(app.getHttpAdapter().getInstance(), app.get(MetricsRegistry));
  setupOpenApi(app);
  return app;
}

function installFastifyHooks(fastify: FastifyInstance, metrics: MetricsRegistry): void {
  // JSON bodies: empty is "no body" (so body-less POSTs work and DTO routes say VALIDATION_FAILED),
  // and a parse failure is our INVALID_JSON rather than Fastify's generic error.
  fastify.removeContentTypeParser('application/json');
  fastify.addContentTypeParser(/^application\/([\w.+-]+\+)?json$/, { parseAs: 'string' }, (_request, body, done) => {
    const text = (body as string).trim();
    if (text === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch {
      done(
        Object.assign(new Error('Request body is not valid JSON'), {
          code: 'FST_ERR_CTP_INVALID_JSON_BODY',
          statusCode: 400,
        }),
        undefined,
      );
    }
  });

  fastify.addHook('onRequest', async (request, reply) => {
    void reply.header('x-request-id', request.id);
  });
  fastify.addHook('onResponse', async (request, reply) => {
    metrics.httpRequestDuration.observe(
      {
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        status_code: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    );
  });
}
