import type { MikroORM } from '@mikro-orm/postgresql';

/** Any constant will do; every replica must use the same one. */
const MIGRATION_LOCK_KEY = 0x5377_7964; // "Swyd"

/**
 * Applies pending migrations while holding a transaction-scoped advisory lock, so replicas
 * starting together queue up instead of racing; the lock ends with the transaction.
 * The migrator uses pool connections besides this transaction, so the pool needs at least two.
 * The embedded database has one connection and one process, so it needs (and allows) no lock.
 */
export async function migrateUnderLock(orm: MikroORM, embedded = false): Promise<string[]> {
  if (embedded) return (await orm.migrator.up()).map((migration) => migration.name);
  const em = orm.em.fork();
  return em.transactional(async (tx) => {
    await tx.execute('select pg_advisory_xact_lock(?)', [MIGRATION_LOCK_KEY]);
    const applied = await orm.migrator.up({ transaction: tx.getTransactionContext() });
    return applied.map((migration) => migration.name);
  });
}

export async function pendingMigrations(orm: MikroORM): Promise<string[]> {
  const pending = await orm.migrator.getPending();
  return pending.map((migration) => migration.name);
}
