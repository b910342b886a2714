import { createParamDecorator, type ExecutionContext, SetMetadata } from '@nestjs/common';
import type { Principal } from './principal.js';

export const ACCESS_KEY = 'switchyard:access';

export type Access = { type: 'public' } | { type: 'admin' } | { type: 'machine'; anyOfRoles: string[] };

/** No credentials needed (health, docs, activation URLs, which authenticate themselves). */
export const Public = () => SetMetadata(ACCESS_KEY, { type: 'public' } satisfies Access);

/** Only `Authorization: Bearer $ADMIN_TOKEN`; the whole admin API is 404 when ADMIN_TOKEN is unset. */
export const AdminOnly = () => SetMetadata(ACCESS_KEY, { type: 'admin' } satisfies Access);

/** A machine user holding at least one of the roles (none listed: any machine user). */
export const MachineUser = (...anyOfRoles: string[]) =>
  SetMetadata(ACCESS_KEY, { type: 'machine', anyOfRoles } satisfies Access);

export const REQUEST_PRINCIPAL = 'principal';

/** The authenticated caller, as the guard left it on the request. */
export const CurrentPrincipal = createParamDecorator(
  (_data: unknown, context: ExecutionContext): Principal =>
    context.switchToHttp().getRequest<Record<string, Principal>>()[REQUEST_PRINCIPAL],
);
