import { execFile, execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './ports.js';

const run = promisify(execFile);
const BIN = process.env.TEST_POSTGRES_BIN ?? newestInstalledBin();
const OWNER = 'postgres';

/** Server settings (`-c name=value`) on top of PostgreSQL's defaults. */
export type ClusterSettings = Record<string, string | number>;

/**
 * A PostgreSQL cluster of a test's or a bench run's own (initdb into a temp dir, its own port and
 * socket dir, the caller's settings) that it may stop and start at will: the shared server on 5432
 * is never touched. initdb refuses to run as root, so as root the binaries run as user `postgres`
 * through runuser; as anyone else they run as that user.
 */
export class PrivateCluster {
  private stopped = true;
  private readonly onExit = () => this.destroySync();

  private constructor(
    readonly root: string,
    readonly port: number,
    private readonly settings: ClusterSettings,
  ) {}

  /** Why a private cluster cannot be made here, or null when it can. */
  static unavailable(): string | null {
    if (!existsSync(join(BIN, 'initdb')) || !existsSync(join(BIN, 'pg_ctl'))) return `no initdb/pg_ctl in ${BIN}`;
    if (!asRoot()) return null;
    try {
      execFileSync('runuser', ['-u', OWNER, '--', 'true'], { stdio: 'ignore' });
      return null;
    } catch (error) {
      return `cannot run as user ${OWNER} with runuser: ${(error as Error).message}`;
    }
  }

  /** initdb (trust auth, loopback only) and start with `settings`; destroy() undoes both. */
  static async create(settings: ClusterSettings = {}): Promise<PrivateCluster> {
    const root = mkdtempSync(join(tmpdir(), 'switchyard-pg-'));
    if (asRoot()) {
      const id = (flag: string) => Number(execFileSync('id', [flag, OWNER], { encoding: 'utf8' }).trim());
      chownSync(root, id('-u'), id('-g'));
    }
    const cluster = new PrivateCluster(root, await freePort(), settings);
    process.once('exit', cluster.onExit);
    try {
      await cluster.pg('initdb', ['-D', cluster.dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
      await cluster.start();
      return cluster;
    } catch (error) {
      cluster.destroySync();
      throw error;
    }
  }

  get dataDir(): string {
    return join(this.root, 'data');
  }

  get url(): string {
    return `postgresql://postgres@127.0.0.1:${this.port}/postgres`;
  }

  /** Starts and waits until it accepts connections. */
  async start(): Promise<void> {
    // Counted as running from here: a start that fails half-way is still stopped by destroy().
    this.stopped = false;
    const log = join(this.root, 'server.log');
    const settings = Object.entries({ listen_addresses: '127.0.0.1', ...this.settings });
    const options = [`-p ${this.port} -k ${this.root}`, ...settings.map(([name, value]) => `-c ${name}=${value}`)].join(
      ' ',
    );
    try {
      await this.pg('pg_ctl', ['start', '-w', '-D', this.dataDir, '-l', log, '-o', options]);
    } catch (error) {
      const tail = existsSync(log) ? readFileSync(log, 'utf8').slice(-2_000) : '(no server log)';
      throw new Error(`${(error as Error).message}\nserver log:\n${tail}`);
    }
  }

  /** `fast` rolls back open transactions and ends sessions; `immediate` kills them without a shutdown checkpoint. */
  async stop(mode: 'fast' | 'immediate'): Promise<void> {
    await this.pg('pg_ctl', ['stop', '-w', '-D', this.dataDir, '-m', mode]);
    this.stopped = true;
  }

  /** Stops (immediately) and deletes the cluster; safe to call twice. */
  async destroy(): Promise<void> {
    process.removeListener('exit', this.onExit);
    if (!this.stopped) await this.stop('immediate').catch(() => undefined);
    rmSync(this.root, { recursive: true, force: true });
  }

  private destroySync(): void {
    process.removeListener('exit', this.onExit);
    if (!this.stopped) {
      try {
        execFileSync(...this.command('pg_ctl', ['stop', '-w', '-D', this.dataDir, '-m', 'immediate']), {
          stdio: 'ignore',
        });
      } catch {
        // already down
      }
      this.stopped = true;
    }
    rmSync(this.root, { recursive: true, force: true });
  }

  private async pg(binary: string, args: string[]): Promise<void> {
    try {
      await run(...this.command(binary, args), { timeout: 60_000 });
    } catch (error) {
      const { stderr, stdout } = error as { stderr?: string; stdout?: string };
      throw new Error(`${binary} ${args[0]} failed: ${(error as Error).message}\n${stdout ?? ''}${stderr ?? ''}`);
    }
  }

  private command(binary: string, args: string[]): [string, string[]] {
    const path = join(BIN, binary);
    return asRoot() ? ['runuser', ['-u', OWNER, '--', path, ...args]] : [path, args];
  }
}

function asRoot(): boolean {
  return process.getuid?.() === 0;
}

/** The newest Debian-packaged server (`/usr/lib/postgresql/<major>/bin`), as `.ci/run` starts the newest cluster. */
function newestInstalledBin(): string {
  const root = '/usr/lib/postgresql';
  const majors = existsSync(root) ? readdirSync(root).filter((name) => /^\d+$/.test(name)) : [];
  const newest = majors.sort((a, b) => Number(b) - Number(a))[0] ?? '15';
  return join(root, newest, 'bin');
}
