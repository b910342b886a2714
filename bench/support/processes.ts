import { type ChildProcess, spawn, type StdioOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { npmStartNodeFlags } from './npm-start.js';
import { freePort } from './ports.js';

/** dist/ (this file runs from dist/bench/support). */
export const DIST = resolve(import.meta.dirname, '../..');

const SERVICE_NODE_FLAGS = npmStartNodeFlags(resolve(DIST, '..'));

export interface ServerProcess {
  baseUrl: string;
  pid: number;
  /** CPU time (user + system) the process has used so far, in ms; null where /proc is missing. */
  cpuMs(): number | null;
  /** Resident set size right now, in MB; null where /proc is missing. */
  rssMb(): number | null;
  stop(): Promise<void>;
}

export interface ServerOptions {
  timeoutMs?: number;
  /** Node flags on top of the ones the script always gets (for the service, `npm start`'s). */
  nodeFlags?: string[];
  /**
   * Receives each line the process prints on stdout (where V8's --trace-gc writes); lines it
   * returns false for are passed on to stderr.
   */
  onStdoutLine?: (line: string) => boolean;
}

/**
 * Runs a compiled script of dist/ as a child process listening on 127.0.0.1:PORT, and waits until
 * `readyPath` answers 200. Servers run apart from the load generator, as they would in production.
 */
export async function startServer(
  script: string,
  env: Record<string, string>,
  readyPath: string,
  { timeoutMs = 60_000, nodeFlags = [], onStdoutLine }: ServerOptions = {},
): Promise<ServerProcess> {
  const port = await freePort();
  // Server logs go to stderr, so stdout carries only the results table.
  const stdout = onStdoutLine ? 'pipe' : 2;
  const child = spawnScript(
    script,
    { ...env, PORT: String(port), HOST: '127.0.0.1' },
    ['ignore', stdout, 2],
    nodeFlags,
  );
  if (onStdoutLine) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!onStdoutLine(line)) process.stderr.write(`${line}\n`);
    });
  }
  const baseUrl = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${script} exited with ${child.exitCode} before it was ready`);
    const status = await fetch(baseUrl + readyPath).then(
      (response) => response.status,
      () => 0,
    );
    if (status === 200) {
      const pid = child.pid!;
      return { baseUrl, pid, cpuMs: () => processCpuMs(pid), rssMb: () => processRssMb(pid), stop: () => stop(child) };
    }
    await new Promise((done) => setTimeout(done, 200));
  }
  await stop(child);
  throw new Error(`${script} was not ready within ${timeoutMs} ms`);
}

/** Runs a compiled script of dist/ to completion and returns what it printed on stdout. */
export async function runScript(script: string, env: Record<string, string>, timeoutMs: number): Promise<string> {
  const child = spawnScript(script, env, ['ignore', 'pipe', 2]);
  let stdout = '';
  child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((done) => child.once('exit', done));
  clearTimeout(timer);
  if (code !== 0) throw new Error(`${script} exited with ${code}`);
  return stdout;
}

function spawnScript(
  script: string,
  env: Record<string, string>,
  stdio: StdioOptions,
  extraNodeFlags: string[] = [],
): ChildProcess {
  // BENCH_CPU_PROFILE_DIR=<dir> profiles every process the run starts (open the .cpuprofile in DevTools).
  const profileDir = process.env.BENCH_CPU_PROFILE_DIR;
  const profile = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${resolve(profileDir)}`] : [];
  const flags = script === 'src/main.js' ? SERVICE_NODE_FLAGS : [];
  return spawn(process.execPath, [...profile, ...flags, ...extraNodeFlags, resolve(DIST, script)], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio,
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((done) => child.once('exit', done));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

/**
 * CPU time (user + system) a process has used so far, in ms; null where /proc is missing or the
 * process is gone. Whether a server is CPU-bound shows in its CPU time per request. Linux only.
 */
export function processCpuMs(pid: number): number | null {
  try {
    return statCpuMs(pid, false);
  } catch {
    return null;
  }
}

/**
 * From /proc/<pid>/stat, in ms: utime + stime, and with `reaped` also cutime + cstime (the
 * children it has waited for). They are the 12th to 15th fields after the parenthesised command
 * name, in clock ticks.
 */
function statCpuMs(pid: number, reaped: boolean): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  const ticks = fields.slice(11, reaped ? 15 : 13).reduce((sum, field) => sum + Number(field), 0);
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** Resident set size of a process (VmRSS), in MB; null where /proc is missing or the process is gone. */
export function processRssMb(pid: number): number | null {
  try {
    const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/**
 * CPU time (user + system) of a process, the children it has reaped and the children it still has,
 * in ms: for a PostgreSQL postmaster, the whole server including backends and autovacuum workers
 * that have come and gone. Null where /proc is missing or the process is gone. Linux only.
 */
export function processTreeCpuMs(pid: number): number | null {
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean);
    const childrenMs = children.reduce((sum, child) => sum + (processCpuMs(Number(child)) ?? 0), 0);
    return statCpuMs(pid, true) + childrenMs;
  } catch {
    return null;
  }
}

/** USER_HZ, which is 100 on every Linux this runs on. */
const CLOCK_TICKS_PER_SECOND = 100;
