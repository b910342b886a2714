import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { RequestMethod } from '@nestjs/common';
import type { Params } from 'nestjs-pino';
import type { AppConfig } from '../config/app-config.js';

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Fastify's genReqId, called first on every request with the raw message: honours a sane
 * `x-request-id`, else makes one, and writes it back to the headers so the logger, the
 * response hook and any error path all see the same id.
 */
export function requestIdFor(raw: IncomingMessage): string {
  const incoming = raw.headers['x-request-id'];
  if (typeof incoming === 'string' && REQUEST_ID.test(incoming)) return incoming;
  const generated = randomUUID();
  raw.headers['x-request-id'] = generated;
  return generated;
}

/** Every header, field or key that can carry a credential or a secret. */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'req.headers["user-token"]',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  '*.generatedToken',
  '*.signingSecret',
  '*.token',
  '*.secret',
  '*.secretsKey',
  '*.adminToken',
  '*.metricsToken',
];

export function loggingParams(config: AppConfig): Params {
  return {
    // nestjs-pino's default route pattern ({/*splat}) never matches under Nest 12's Fastify
    // adapter, which silently dropped every request log; this is the pattern the adapter matches.
    forRoutes: [{ path: '/{*all}', method: RequestMethod.ALL }],
    pinoHttp: {
      level: config.logLevel,
      genReqId: (req) => (req.headers['x-request-id'] as string | undefined) ?? randomUUID(),
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      customLogLevel: (_req, res, error) =>
        error || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'info',
      // Query strings can carry activation data; the path alone identifies the route.
      serializers: {
        req: (req: { id: string; method: string; url: string }) => ({
          id: req.id,
          method: req.method,
          path: req.url.split('?')[0],
        }),
      },
    },
  };
}
