import { Injectable } from '@nestjs/common';
import { type FilterQuery, LockMode } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import { type ListQueryDto, type Page, paginate } from '../common/pagination.js';
import { Backend } from './backend.entity.js';
import type { RoutableBackend } from './registry.types.js';

/**
 * The queries of the `backends` table. Every method takes the caller's EntityManager, so it
 * runs inside whatever transaction the caller holds.
 */
@Injectable()
export class BackendsRepository {
  /**
   * Inserts unless the machine user already has a backend of that name; true if inserted.
   * `on conflict do nothing` is what makes concurrent first registrations safe: the second
   * insert waits for the first transaction, then sees the conflict instead of failing with a
   * unique violation (or, if the first rolled back, inserts after all).
   */
  async insertUnlessNameTaken(em: EntityManager, row: Backend): Promise<boolean> {
    const result = await em.qb(Backend).insert(row).onConflict(['machineUserId', 'name']).ignore().execute('run');
    return result.affectedRows === 1;
  }

  /** The machine user's backend of that name, locked until the transaction ends. */
  lockByOwnerAndName(em: EntityManager, machineUserId: string, name: string): Promise<Backend | null> {
    return em.findOne(Backend, { machineUserId, name }, { lockMode: LockMode.PESSIMISTIC_WRITE });
  }

  /** For a machine user's request, `where` comes from MachinePrincipal.scoped; workers may look up by id alone. */
  findOne(em: EntityManager, where: FilterQuery<Backend>, options: { lock?: boolean } = {}): Promise<Backend | null> {
    return em.findOne(Backend, where, options.lock ? { lockMode: LockMode.PESSIMISTIC_WRITE } : {});
  }

  page<R>(em: EntityManager, where: FilterQuery<Backend>, query: ListQueryDto, present: (row: Backend) => R) {
    return paginate(em, Backend, where, query, present) as Promise<Page<R>>;
  }

  /**
   * Enabled backends of a tenant listening on `runKey`, oldest first so fan-out order is stable.
   * `run_keys @> array[?]` with a bare `enabled` is the shape the partial GIN index
   * `backends_routing (run_keys) where enabled` answers; `? = any(run_keys)` would scan.
   */
  async findRoutable(em: EntityManager, tenantId: string, runKey: string): Promise<RoutableBackend[]> {
    const rows = await em.execute<
      { id: string; tenant_id: string; machine_user_id: string; name: string; callback_url: string }[]
    >(
      `select id, tenant_id, machine_user_id, name, callback_url
         from backends
        where tenant_id = ? and enabled and run_keys @> array[?]::text[]
        order by created_at, id`,
      [tenantId, runKey],
    );
    return rows.map((row) => ({
      id: row.id,
      tenantId: row.tenant_id,
      machineUserId: row.machine_user_id,
      name: row.name,
      callbackUrl: row.callback_url,
    }));
  }

  /** Ids of the backends one machine user registered. */
  async idsOwnedBy(em: EntityManager, tenantId: string, machineUserId: string): Promise<string[]> {
    const rows = await em.find(Backend, { tenantId, machineUserId }, { fields: ['id'], orderBy: { id: 'asc' } });
    return rows.map((row) => row.id);
  }

  /** Disables an enabled backend; false if it was already disabled or does not exist. */
  async disable(em: EntityManager, id: string): Promise<boolean> {
    const changed = await em.nativeUpdate(Backend, { id, enabled: true }, { enabled: false, updatedAt: new Date() });
    return changed === 1;
  }

  async delete(em: EntityManager, id: string): Promise<void> {
    await em.nativeDelete(Backend, { id });
  }
}
