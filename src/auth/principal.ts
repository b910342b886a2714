import type { FilterQuery } from '@mikro-orm/postgresql';

export const ROLE_BACKEND = 'backend';
export const ROLE_OPERATOR = 'operator';

export interface AdminPrincipal {
  kind: 'admin';
}

/**
 * A verified machine user. It is also the tenant scope: every query a machine-user request
 * makes goes through `scoped()`, so an object of another tenant simply does not match (404).
 */
export class MachinePrincipal {
  readonly kind = 'machine' as const;

  constructor(
    readonly tenantId: string,
    readonly machineUserId: string,
    readonly tokenId: string,
    readonly username: string,
    readonly name: string,
    readonly roles: readonly string[],
  ) {}

  hasRole(role: string): boolean {
    return this.roles.includes(role);
  }

  /** `where` narrowed to this tenant. */
  scoped<T extends { tenantId: string }>(where: FilterQuery<T> & object = {} as never): FilterQuery<T> {
    return { ...where, tenantId: this.tenantId } as FilterQuery<T>;
  }
}

export type Principal = AdminPrincipal | MachinePrincipal;
