import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { Logger } from '@nestjs/common';

/**
 * PGlite served over the PostgreSQL wire protocol on loopback, so the service talks to the
 * embedded default exactly as it talks to a real server: same driver, same SQL, same migrations.
 * PGlite runs one session, so the ORM pool must hold a single connection.
 */
export class EmbeddedPostgres {
  private static readonly logger = new Logger('EmbeddedPostgres');

  private constructor(
    private readonly db: PGlite,
    private readonly server: PGLiteSocketServer,
    readonly url: string,
  ) {}

  static async start(dataDir: string): Promise<EmbeddedPostgres> {
    const directory = join(dataDir, 'pglite');
    mkdirSync(directory, { recursive: true });
    const db = await PGlite.create(directory);
    const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port: 0 });
    await server.start();
    const port = Number(server.getServerConn().split(':').pop());
    const url = `postgresql://postgres@127.0.0.1:${port}/postgres`;
    EmbeddedPostgres.logger.log(`embedded PostgreSQL (PGlite) in ${directory}, serving 127.0.0.1:${port}`);
    return new EmbeddedPostgres(db, server, url);
  }

  async stop(): Promise<void> {
    await this.server.stop();
    await this.db.close();
  }
}
