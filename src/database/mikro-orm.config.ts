import { defineConfig, type Options } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
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
    driverOptions: { connectionTimeoutMillis: CONNECTION_TIMEOUT_MS, application_name: 'switchyard' },
    forceUtcTimezone: true,
    allowGlobalContext: false,
    ensureIndexes: false,
    debug: false,
  });
}
