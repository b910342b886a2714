import { createServer, connect, type Server, type Socket } from 'node:net';
import { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import { createOrmConfig } from '../src/database/mikro-orm.config.js';
import { within } from './support/built-app.js';
import { createTestDatabase, serverAvailable, type TestDatabase } from './support/database.js';
import { eventually } from './support/receiver.js';

const hasServer = await serverAvailable();

/**
 * A proxy in front of PostgreSQL that can make the server's last words cross the client's next
 * statement on the wire, as they do when the server shuts down under load: once `hold()` is
 * called, what the server sends is kept back until the client sends something, then forwarded,
 * and the server's close follows a moment later (on a real socket it arrives in a later read).
 */
class CrossingWire {
  private holding = false;
  private readonly held: Buffer[] = [];
  private readonly sockets = new Set<Socket>();

  private constructor(private readonly server: Server) {}

  static async start(target: URL): Promise<CrossingWire> {
    const server = createServer();
    const wire = new CrossingWire(server);
    server.on('connection', (client) => wire.pipe(client, connect(Number(target.port), target.hostname)));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return wire;
  }

  get port(): number {
    return (this.server.address() as { port: number }).port;
  }

  hold(): void {
    this.holding = true;
  }

  /** Resolves once the server has said something that is being held back. */
  heldBack(): Promise<true> {
    return eventually(async () => this.held.length > 0, 5_000);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private pipe(client: Socket, server: Socket): void {
    let serverEnded = false;
    for (const socket of [client, server]) {
      this.sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => this.sockets.delete(socket));
    }
    server.on('data', (chunk: Buffer) => (this.holding ? this.held.push(chunk) : client.write(chunk)));
    server.on('end', () => {
      serverEnded = true;
      if (!this.holding) client.end();
    });
    client.on('end', () => server.end());
    client.on('data', (chunk: Buffer) => {
      if (this.holding && this.held.length > 0) {
        this.holding = false;
        for (const piece of this.held.splice(0)) client.write(piece);
        setTimeout(() => serverEnded && client.end(), 20);
      }
      if (!server.destroyed) server.write(chunk);
    });
  }
}

/**
 * The second way a connection leaked when PostgreSQL went down under load (found by
 * database-restart.e2e-spec.ts): the server's FATAL "terminating connection due to administrator
 * command" arrives as the answer to a `begin` or `rollback` the client has just sent, before the
 * socket closes, so the client still looks queryable. Kysely then never released the connection,
 * and the pool's end waited for it forever.
 */
describe.runIf(hasServer)('a FATAL from the server crossing the next statement', () => {
  let database: TestDatabase;
  let wire: CrossingWire;
  let orm: MikroORM | null = null;
  let observer: pg.Client;

  beforeAll(async () => {
    database = await createTestDatabase();
    observer = new pg.Client({ connectionString: database.url!, application_name: 'switchyard-test' });
    await observer.connect();
  });
  beforeEach(async () => {
    wire = await CrossingWire.start(new URL(database.url!));
    const url = new URL(database.url!);
    url.port = String(wire.port);
    // One pooled connection: a leaked one leaves nothing to serve the next transaction.
    orm = await MikroORM.init(createOrmConfig(url.toString(), 1));
  });
  afterEach(async () => {
    if (orm) await within(orm.close(), 5_000, 'closing the ORM after a failure').catch(() => undefined);
    orm = null;
    await wire.close();
  });
  afterAll(async () => {
    await observer?.end();
    await database?.drop();
  });

  /** Ends the pooled connection's session while the wire holds the server's answer back. */
  const terminateHeld = async (em: { execute: MikroORM['em']['execute'] }) => {
    const rows = await em.execute<{ pid: number }[]>('select pg_backend_pid() as pid');
    wire.hold();
    // With a timeout, pg_terminate_backend returns once the backend has exited.
    const { rows: ended } = await observer.query('select pg_terminate_backend($1, 5000) as ok', [rows[0].pid]);
    expect(ended[0].ok).toBe(true);
    await wire.heldBack();
  };

  const expectPoolStillServes = async () => {
    // A leaked connection would make this wait for the pool's 5 s connection timeout, then fail.
    const rows = await within(
      orm!.em.fork().transactional((em) => em.execute<{ one: number }[]>('select 1 as one')),
      2_000,
      'the next transaction',
    );
    expect(rows).toEqual([{ one: 1 }]);
    const closing = orm!.close();
    orm = null;
    await within(closing, 2_000, 'closing the ORM');
  };

  it('on the begin: the transaction fails and the connection is released', async () => {
    await terminateHeld(orm!.em.fork());
    await expect(orm!.em.fork().transactional((em) => em.execute('select 1'))).rejects.toThrow(
      /terminating connection|Connection terminated|not queryable/,
    );
    await expectPoolStillServes();
  });

  it('on the rollback: the transaction fails with its own error and the connection is released', async () => {
    const transaction = orm!.em.fork().transactional(async (em) => {
      await terminateHeld(em);
      throw new Error('the business rule said no');
    });
    await expect(transaction).rejects.toThrow('the business rule said no');
    await expectPoolStillServes();
  });

  it('on the commit: the transaction fails and the connection is released', async () => {
    const transaction = orm!.em.fork().transactional(async (em) => {
      await terminateHeld(em);
    });
    await expect(transaction).rejects.toThrow(/terminating connection|Connection terminated|not queryable/);
    await expectPoolStillServes();
  });
});
