import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { npmStartNodeFlags } from '../../bench/support/npm-start.js';
import { freePort } from '../../bench/support/ports.js';

export { freePort };

// The built service exactly as `npm start` runs it, in a process of its own: start-up, the
// embedded database, stdout logging and the shutdown path only show up there.
const ROOT = resolve(import.meta.dirname, '../..');
const MAIN = join(ROOT, 'dist/src/main.js');
const NODE_FLAGS = npmStartNodeFlags(ROOT);

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface BuiltApp {
  child: ChildProcess;
  baseUrl: string;
  stdout(): string;
  stderr(): string;
  exited: Promise<Exit>;
}

/** `npm test` builds first; a lone `vitest run` of one file may find no dist yet. */
export function ensureBuilt(): void {
  if (!existsSync(MAIN)) execFileSync('npx', ['nest', 'build'], { cwd: ROOT, stdio: 'inherit' });
}

/**
 * Starts `node <npm start's flags> dist/src/main.js` in `cwd` with only `env` (plus PATH and HOME),
 * so nothing from the caller's environment (DATABASE_URL, SECRETS_KEY, CI…) leaks in, nor a `.env`
 * of the repo.
 */
export function spawnBuiltApp(cwd: string, env: Record<string, string>): BuiltApp {
  const child = spawn(process.execPath, [...NODE_FLAGS, MAIN], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? cwd, HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<Exit>((done) => child.once('exit', (code, signal) => done({ code, signal })));
  return {
    child,
    baseUrl: `http://127.0.0.1:${env.PORT ?? 3000}`,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
  };
}

/** Polls /health/ready until it answers 200, the process dies, or the time is up. */
export async function waitUntilReady(app: BuiltApp, timeoutMs = 60_000): Promise<{ status: number; body: any }> {
  const deadline = Date.now() + timeoutMs;
  let last = { status: 0, body: null as any };
  while (Date.now() < deadline && app.child.exitCode === null) {
    try {
      const response = await fetch(`${app.baseUrl}/health/ready`);
      last = { status: response.status, body: await response.json() };
      if (last.status === 200) return last;
    } catch {
      // not listening yet
    }
    await new Promise((done) => setTimeout(done, 250));
  }
  throw new Error(`never ready (last answer ${last.status}); stderr:\n${app.stderr()}\nstdout:\n${app.stdout()}`);
}

export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Kills whatever is still running; for afterEach/afterAll. */
export function killAll(apps: BuiltApp[]): void {
  for (const app of apps.splice(0))
    if (app.child.exitCode === null && app.child.signalCode === null) app.child.kill('SIGKILL');
}
