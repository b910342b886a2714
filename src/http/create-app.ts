import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyInstance } from 'fastify';
import { Logger } from 'nestjs-pino';
import { AppModule } from '../app.module.js';
import { DomainException } from '../common/errors.js';
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
    // Nest's own parsers would replace our JSON parser and accept form bodies (SPEC §7: JSON only).
    bodyParser: false,
  });
  app.useLogger(app.get(Logger));
  // Exit 0 once shutdown is done (Nest would re-raise the signal instead), so pino flushes and
  // supervisors see a clean stop.
  app.enableShutdownHooks([], { useProcessExit: true });
  installFastifyHooks(app.getHttpAdapter().getInstance(), app.get(MetricsRegistry));
  setupOpenApi(app);
  return app;
}

/**
 * Activation URLs check the body size after the trigger and the caller's credentials (SPEC §4's
 * order), so their parser accepts more and the route answers 413 itself past 1 MiB.
 */
const ACTIVATION_PARSER_LIMIT = 16 * 1024 * 1024;

function installFastifyHooks(fastify: FastifyInstance, metrics: MetricsRegistry): void {
  fastify.addHook('onRoute', (route) => {
    if (route.url.startsWith('/api/automation/')) route.bodyLimit = ACTIVATION_PARSER_LIMIT;
  });
  // JSON bodies: empty is "no body" (so body-less POSTs work and DTO routes say VALIDATION_FAILED),
  // a parse failure is INVALID_JSON, and Fastify's parser stays underneath for its guard against
  // __proto__ / constructor.prototype keys, which plain JSON.parse and the DTO whitelist let through.
  // Media-type parameters (`; charset=utf-8`) are part of what Fastify matches a RegExp against.
  const parseJson = fastify.getDefaultJsonParser('error', 'error');
  fastify.removeContentTypeParser('application/json');
  fastify.addContentTypeParser(
    /^application\/([\w.+-]+\+)?json\s*(;|$)/i,
    { parseAs: 'string' },
    (request, body, done) => {
      const text = (body as string).trim();
      (request as { bodyBytes?: number }).bodyBytes = Buffer.byteLength(body as string);
      if (text === '') return done(null, undefined);
      parseJson(request, text, (error, value) => {
        if (error && isJson(text)) {
          return done(DomainException.field('body', 'must not use the keys __proto__ or constructor.prototype'));
        }
        done(error, value);
      });
    },
  );

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

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
