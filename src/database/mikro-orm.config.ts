import { defineConfig, type Options } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import { MIGRATIONS } from '../../migrations/index.js';
import { ENTITIES } from './entities.js';

export const MIGRATIONS_TABLE = 'schema_migrations';

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
    forceUtcTimezone: true,
    allowGlobalContext: false,
    ensureIndexes: false,
    debug: false,
  });
}
