import { type ChildProcess, spawn, type StdioOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';

/** dist/ (this file runs from dist/bench/support). */
export const DIST = resolve(import.meta.dirname, '../..');

/**
 * The node flags of `npm start` (package.json's start script), so the service runs here exactly as
 * it is started in production.
 */
const SERVICE_NODE_FLAGS: string[] = JSON.parse(readFileSync(resolve(DIST, '../package.json'), 'utf8'))
  .scripts.start.split(/\s+/)
  .filter((arg: string) => arg.startsWith('--'));

/** A port nobody listens on right now (the service cannot report the one PORT=0 would pick). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as { port: number };
  await new Promise((done) => server.close(done));
  return port;
}

export interface ServerProcess {
  baseUrl: string;
  pid: number;
  /** CPU time (user + system) the process has used so far, in ms; null where /proc is missing. */
  cpuMs(): number | null;
  /** Resident set size right now, in MB; null where /proc is missing. */
  rssMb(): number | null;
  stop(): Promise<void>;
}

/**
 * Runs a compiled script of dist/ as a child process listening on 127.0.0.1:PORT, and waits until
 * `readyPath` answers 200. Servers run apart from the load generator, as they would in production.
 */
export async function startServer(
  script: string,
  env: Record<string, string>,
  readyPath: string,
  timeoutMs = 60_000,
): Promise<ServerProcess> {
  const port = await freePort();
  // Server logs go to stderr, so stdout carries only the results table.
  const child = spawnScript(script, { ...env, PORT: String(port), HOST: '127.0.0.1' }, ['ignore', 2, 2]);
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

function spawnScript(script: string, env: Record<string, string>, stdio: StdioOptions): ChildProcess {
  // BENCH_CPU_PROFILE_DIR=<dir> profiles every process the run starts (open the .cpuprofile in DevTools).
  const profileDir = process.env.BENCH_CPU_PROFILE_DIR;
  const profile = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${resolve(profileDir)}`] : [];
  const flags = script === 'src/main.js' ? SERVICE_NODE_FLAGS : [];
  return spawn(process.execPath, [...profile, ...flags, resolve(DIST, script)], {
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
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th, in ticks.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return null;
  }
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

/** USER_HZ, which is 100 on every Linux this runs on. */
const CLOCK_TICKS_PER_SECOND = 100;
