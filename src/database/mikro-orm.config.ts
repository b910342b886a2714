import { defineConfig, type Options } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import type pg from 'pg';
import { MIGRATIONS } from '../../migrations/index.js';
import { ENTITIES } from './entities.js';

export const MIGRATIONS_TABLE = 'schema_migrations';
export const CONNECTION_TIMEOUT_MS = 5_000;

/** One ORM configuration for the app, the migrate command and the tests. */
export function createOrmConfig(clientUrl: string, poolSize: number): Options {
  return defineConfig({
    clientUrl,
    entities: ENTITIES,
    extensions: [Migrator],
    migrations: {
      migrationsList: MIGRATIONS,
      tableName: MIGRATIONS_TABLE,
      snapshot: false,
      transactional: true,
      allOrNothing: true,
      silent: true,
    },
    pool: { min: 0, max: poolSize, idleTimeoutMillis: 30_000 },
    // A request waits at most this long for a pooled connection: with the database down it gets
    // 503 UNAVAILABLE instead of hanging. The name tells operators which sessions are ours.
    driverOptions: {
      connectionTimeoutMillis: CONNECTION_TIMEOUT_MS,
      application_name: 'switchyard',
      onPoolCreated: releaseDeadTransactions,
    },
    forceUtcTimezone: true,
    allowGlobalContext: false,
    ensureIndexes: false,
    debug: false,
  });
}

/**
 * Kysely's controlled transactions (MikroORM's `transactional`) return their pooled connection only
 * after a successful `rollback`. When the connection died mid-transaction (database restart,
 * `pg_terminate_backend`, network cut) that rollback fails too, so the client was never released:
 * each cut transaction leaked a pool slot for good, and `orm.close()` hung on it. The server has
 * already rolled back a transaction whose session ended, so a `rollback` on a client that lost its
 * connection is reported as done: Kysely then releases the client and pg-pool discards it (it is no
 * longer queryable). A `begin` that fails the same way would leak the client likewise (Kysely acquires it
 * first): it is reported as done too, the transaction's first statement then fails on the dead
 * client and the rollback above releases it. Failures on a live connection still throw.
 *
 * A session can also end *in answer to* a statement: when PostgreSQL shuts down under load, its FATAL
 * ("terminating connection due to administrator command") crosses the `begin` or `rollback` the client
 * has just sent and arrives as that statement's error while the socket is still open (the close comes
 * in a later read), so pg still calls the client queryable: the `begin`/`rollback` threw, and the
 * connection leaked as above. So a client whose statement ends its session is ended at once, whatever
 * the statement: it then counts as lost here, and pg-pool discards it on release instead of handing a
 * dead session to the next request before the close arrives.
 */
export function releaseDeadTransactions(pool: pg.Pool): void {
  pool.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      const result = query(...args);
      if (!(result instanceof Promise)) return result;
      return result.catch((error: unknown) => {
        if (endsSession(error)) void client.end().catch(() => undefined);
        if ((args[0] === 'rollback' || args[0] === 'begin') && connectionLost(client))
          return { command: String(args[0]).toUpperCase(), rowCount: null, rows: [], fields: [] };
        throw error;
      });
    };
  });
}

/** pg's own flags (pg-pool reads `_queryable` and `_ending` on release to discard a client). */
function connectionLost(client: pg.PoolClient): boolean {
  const state = client as unknown as { _queryable?: boolean; _ending?: boolean; _ended?: boolean };
  return state._queryable === false || state._ending === true || state._ended === true;
}

/**
 * PostgreSQL closes the session after any FATAL or PANIC. `severity` may be translated (lc_messages),
 * so the SQLSTATEs of a session ending are checked too: operator intervention (57P01 admin shutdown,
 * 57P02 crash shutdown, 57P03 cannot connect now, 57P04 database dropped, 57P05 idle session
 * timeout), 25P03 idle-in-transaction timeout, and the connection exceptions (class 08).
 */
function endsSession(error: unknown): boolean {
  const { severity, code } = (error ?? {}) as { severity?: unknown; code?: unknown };
  if (severity === 'FATAL' || severity === 'PANIC') return true;
  return typeof code === 'string' && (code.startsWith('57P') || code.startsWith('08') || code === '25P03');
}
