import { type ExecutionContext, Injectable } from '@nestjs/common';
import { ThrottlerGuard, type ThrottlerLimitDetail } from '@nestjs/throttler';
import type { FastifyRequest } from 'fastify';
import { REQUEST_PRINCIPAL } from '../auth/auth.decorators.js';
import type { Principal } from '../auth/principal.js';
import { DomainException } from '../common/errors.js';

const UNLIMITED_PATHS = /^\/(health|metrics|docs)(\/|-json|$)/;

/**
 * RATE_LIMIT_PER_MINUTE, per replica (@nestjs/throttler's in-memory store): per token on
 * authenticated routes (it runs after AuthGuard, which identified the caller), per client IP on
 * public ones (activation URLs; `request.ip` honours X-Forwarded-For only with TRUST_PROXY).
 * Health, metrics and docs are never limited. Per replica because a shared counter would put a
 * database write on every request; behind N replicas the effective limit is up to N times the
 * setting, so operators wanting a hard global cap set it at the gateway.
 */
@Injectable()
export class RateLimitGuard extends ThrottlerGuard {
  protected override async shouldSkip(context: ExecutionContext): Promise<boolean> {
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    return UNLIMITED_PATHS.test(request.url);
  }

  protected override async getTracker(request: Record<string, unknown>): Promise<string> {
    const principal = request[REQUEST_PRINCIPAL] as Principal | undefined;
    if (principal?.kind === 'machine') return `token:${principal.tokenId}`;
    if (principal?.kind === 'admin') return 'admin';
    return `ip:${(request as unknown as FastifyRequest).ip}`;
  }

  /** One budget per caller across every route (the library's default is per route). */
  protected override generateKey(_context: ExecutionContext, tracker: string, name: string): string {
    return `${name}:${tracker}`;
  }

  protected override async throwThrottlingException(
    _context: ExecutionContext,
    detail: ThrottlerLimitDetail,
  ): Promise<void> {
    throw new DomainException(
      'RATE_LIMITED',
      `Rate limit of ${detail.limit} requests per minute reached; retry in ${detail.timeToBlockExpire} s`,
      {},
      { 'retry-after': String(Math.max(1, detail.timeToBlockExpire)) },
    );
  }
}
