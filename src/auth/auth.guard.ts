import { type ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AuthGuard as PassportAuthGuard } from '@nestjs/passport';
import type { FastifyRequest } from 'fastify';
import { DomainException } from '../common/errors.js';
import { AppConfig } from '../config/app-config.js';
import { ACCESS_KEY, type Access, REQUEST_PRINCIPAL } from './auth.decorators.js';
import type { Principal } from './principal.js';

const CREDENTIALS = Symbol('credentials');

/**
 * The global guard. Every route states its access with @Public, @AdminOnly or @MachineUser;
 * a route that states nothing still needs a machine user. Authentication goes through
 * passport-http-bearer, given only the Authorization header: the strategy would also accept
 * `access_token` in the query, and tokens in URLs end up in logs.
 */
@Injectable()
export class AuthGuard extends PassportAuthGuard('bearer') {
  constructor(
    private readonly reflector: Reflector,
    private readonly config: AppConfig,
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
    const request = context.switchToHttp().getRequest<Record<string | symbol, unknown>>();
    const principal = (request[CREDENTIALS] as Record<string, unknown>)[REQUEST_PRINCIPAL] as Principal;
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

  override getAuthenticateOptions() {
    return { session: false, property: REQUEST_PRINCIPAL };
  }

  override handleRequest<T>(error: unknown, principal: T): T {
    if (error) throw error;
    if (!principal) throw new DomainException('UNAUTHENTICATED', 'Missing, invalid or revoked bearer token');
    return principal;
  }

  /** Passport sees a request holding nothing but the Authorization header. */
  override getRequest(context: ExecutionContext): Record<string, unknown> {
    const request = context.switchToHttp().getRequest<FastifyRequest & Record<symbol, Record<string, unknown>>>();
    request[CREDENTIALS] ??= { headers: { authorization: request.headers.authorization } };
    return request[CREDENTIALS];
  }
}
