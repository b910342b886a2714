import {
  Global,
  Injectable,
  Logger,
  type MiddlewareConsumer,
  Module,
  type NestModule,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
  RequestMethod,
} from '@nestjs/common';
import { MikroOrmMiddleware, MikroOrmModule } from '@mikro-orm/nestjs';
import { MikroORM, PostgreSqlDriver } from '@mikro-orm/postgresql';
import { AppConfig } from '../config/app-config.js';
import type { EmbeddedPostgres } from './embedded-postgres.js';
import { migrateUnderLock } from './migrate.js';
import { createOrmConfig } from './mikro-orm.config.js';

/** Owns the embedded PostgreSQL when DATABASE_URL is unset; stops it after the ORM has closed. */
@Injectable()
export class DatabaseConnection implements OnApplicationShutdown {
  private embedded: EmbeddedPostgres | null = null;

  constructor(private readonly config: AppConfig) {}

  get isEmbedded(): boolean {
    return this.config.databaseUrl === null;
  }

  async url(): Promise<string> {
    if (this.config.databaseUrl) return this.config.databaseUrl;
    // Loaded only for the embedded default: with DATABASE_URL set, PGlite is never imported.
    const { EmbeddedPostgres } = await import('./embedded-postgres.js');
    this.embedded ??= await EmbeddedPostgres.start(this.config.dataDir);
    return this.embedded.url;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.embedded?.stop();
    this.embedded = null;
  }
}

@Injectable()
class MigrateOnStart implements OnApplicationBootstrap {
  private readonly logger = new Logger('Migrations');

  constructor(
    private readonly orm: MikroORM,
    private readonly config: AppConfig,
    private readonly connection: DatabaseConnection,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    if (!this.config.migrateOnStart) return;
    const applied = await migrateUnderLock(this.orm, this.connection.isEmbedded);
    this.logger.log(applied.length ? `applied ${applied.join(', ')}` : 'schema is up to date');
  }
}

@Global()
@Module({
  providers: [DatabaseConnection],
  exports: [DatabaseConnection],
})
class DatabaseConnectionModule {}

@Global()
@Module({
  imports: [
    DatabaseConnectionModule,
    MikroOrmModule.forRootAsync({
      driver: PostgreSqlDriver,
      inject: [DatabaseConnection, AppConfig],
      useFactory: async (connection: DatabaseConnection, config: AppConfig) => ({
        ...createOrmConfig(await connection.url(), connection.isEmbedded ? 1 : config.databasePoolSize),
        // Registered below, without the activation URLs.
        registerRequestContext: false,
      }),
    }),
  ],
  providers: [MigrateOnStart],
})
export class DatabaseModule implements NestModule {
  /**
   * Every request gets its own EntityManager fork (MikroORM's request context), except activations:
   * their service forks explicitly where it needs one, and they are the one public hot path (a
   * fork per request was ~5 % of the service's CPU under the activation bench).
   */
  configure(consumer: MiddlewareConsumer): void {
    consumer
      .apply(MikroOrmMiddleware)
      .exclude({ path: 'api/automation/{*path}', method: RequestMethod.ALL })
      .forRoutes({ path: '{*all}', method: RequestMethod.ALL });
  }
}
