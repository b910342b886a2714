import { type ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AuthGuard as PassportAuthGuard } from '@nestjs/passport';
import type { FastifyRequest } from 'fastify';
import { DomainException } from '../common/errors.js';
import { AppConfig } from '../config/app-config.js';
import { ACCESS_KEY, type Access, REQUEST_PRINCIPAL } from './auth.decorators.js';
import { BEARER_STRATEGY, type BearerCredentials } from './bearer.strategy.js';
import type { Principal } from './principal.js';
import { TokenVerifier } from './token-verifier.js';

const CREDENTIALS = Symbol('credentials');

type GuardedRequest = FastifyRequest & { [CREDENTIALS]?: BearerCredentials & Record<string, unknown> } & Record<
    string,
    unknown
  >;

/**
 * The global guard. Every route states its access with @Public, @AdminOnly or @MachineUser;
 * a route that states nothing still needs a machine user. Passport sees only the
 * Authorization header: passport-http-bearer would also take `access_token` from the query or
 * body, and tokens in URLs end up in logs.
 */
@Injectable()
export class AuthGuard extends PassportAuthGuard(BEARER_STRATEGY) {
  constructor(
    private readonly reflector: Reflector,
    private readonly config: AppConfig,
    private readonly tokens: TokenVerifier,
  ) {
    super();
  }

  override async canActivate(context: ExecutionContext): Promise<boolean> {
    const access = this.reflector.getAllAndOverride<Access | undefined>(ACCESS_KEY, [
      context.getHandler(),
      context.getClass(),
    ]) ?? { type: 'machine', anyOfRoles: [] };
    if (access.type === 'public') return true;
    if (access.type === 'admin' && this.config.adminToken === null) throw DomainException.notFound('Route');

    await super.canActivate(context);
    const request = context.switchToHttp().getRequest<GuardedRequest>();
    const principal = request[CREDENTIALS]![REQUEST_PRINCIPAL] as Principal;
    request[REQUEST_PRINCIPAL] = principal;

    if (access.type === 'admin') {
      if (principal.kind !== 'admin') throw new DomainException('FORBIDDEN', 'This route needs the admin token');
      return true;
    }
    if (principal.kind !== 'machine') {
      throw new DomainException('FORBIDDEN', 'This route needs a machine user token, not the admin token');
    }
    if (access.anyOfRoles.length > 0 && !access.anyOfRoles.some((role) => principal.hasRole(role))) {
      throw new DomainException('FORBIDDEN', `This route needs the role ${access.anyOfRoles.join(' or ')}`);
    }
    return true;
  }

  override getRequest(context: ExecutionContext): BearerCredentials {
    const request = context.switchToHttp().getRequest<GuardedRequest>();
    request[CREDENTIALS] ??= { headers: { authorization: request.headers.authorization }, verifier: this.tokens };
    return request[CREDENTIALS];
  }

  override getAuthenticateOptions() {
    return { session: false, property: REQUEST_PRINCIPAL };
  }

  override handleRequest<T>(error: unknown, principal: T): T {
    if (error) throw error;
    if (!principal) throw new DomainException('UNAUTHENTICATED', 'Missing, invalid or revoked bearer token');
    return principal;
  }
}
