import 'reflect-metadata';
import { existsSync } from 'node:fs';
import { MikroORM } from '@mikro-orm/postgresql';
import { ConfigError, parseConfig } from '../config/app-config.js';
import { EmbeddedPostgres } from '../database/embedded-postgres.js';
import { migrateUnderLock } from '../database/migrate.js';
import { createOrmConfig } from '../database/mikro-orm.config.js';

/** `npm run migrate`: apply pending migrations to DATABASE_URL (or the embedded database) and exit. */
async function main(): Promise<void> {
  if (existsSync('.env')) process.loadEnvFile('.env');
  const config = parseConfig(process.env);
  const embedded = config.databaseUrl ? null : await EmbeddedPostgres.start(config.dataDir);
  const orm = await MikroORM.init(createOrmConfig(config.databaseUrl ?? embedded!.url, embedded ? 1 : 2));
  try {
    const applied = await migrateUnderLock(orm, embedded !== null);
    console.log(applied.length ? `applied: ${applied.join(', ')}` : 'schema is up to date');
  } finally {
    await orm.close();
    await embedded?.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(1);
});
