import { createParamDecorator, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';

/**
 * The absolute base the caller reached us at: `https://host[:port]`. Fastify honours
 * X-Forwarded-Proto/-Host only when TRUST_PROXY is set, so a client cannot forge it otherwise.
 * PUBLIC_BASE_URL, when configured, wins over this (the services decide).
 */
export const RequestBaseUrl = createParamDecorator((_data: unknown, context: ExecutionContext): string => {
  const request = context.switchToHttp().getRequest<FastifyRequest>();
  return `${request.protocol}://${request.host}`;
});
