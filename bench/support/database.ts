import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { processCpuMs, processTreeCpuMs } from './processes.js';

export interface BenchDatabase {
  url: string;
  drop(): Promise<void>;
}

/** A fresh database on the given server, so a run never touches data it did not create. */
export async function createBenchDatabase(serverUrl: string): Promise<BenchDatabase> {
  const name = `switchyard_bench_${Date.now().toString(36)}_${randomBytes(3).toString('hex')}`;
  await admin(serverUrl, `create database ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(serverUrl, `drop database if exists ${name} with (force)`) };
}

async function admin(serverUrl: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/**
 * CPU time so far of every PostgreSQL backend serving the client's database, by pid (Linux /proc;
 * the server must run on this host). WAL writer and checkpointer are not included.
 */
export async function databaseBackendsCpuMs(client: pg.Client): Promise<Map<number, number>> {
  const { rows } = await client.query<{ pid: number }>(
    'select pid from pg_stat_activity where datname = current_database()',
  );
  const usage = new Map<number, number>();
  for (const { pid } of rows) {
    const ms = processCpuMs(pid);
    if (ms !== null) usage.set(pid, ms);
  }
  return usage;
}

/**
 * The CPU the backends used between two readings. A backend that started in between counts whole;
 * one that ended in between is missed, so measure while the service's pool is warm.
 */
export function cpuBetween(before: Map<number, number>, after: Map<number, number>): number {
  let total = 0;
  for (const [pid, ms] of after) total += ms - (before.get(pid) ?? 0);
  return total;
}

/**
 * A function reading the CPU time so far of the whole PostgreSQL server the client is connected to
 * (postmaster, backends, autovacuum workers, WAL writer, checkpointer, living or gone), in ms; it
 * returns null if the server does not run on this host or the postmaster is gone.
 */
export async function serverCpuReader(client: pg.Client): Promise<() => number | null> {
  const { rows } = await client.query<{ data_directory: string }>('show data_directory');
  let postmaster: number;
  try {
    postmaster = Number(readFileSync(join(rows[0].data_directory, 'postmaster.pid'), 'utf8').split('\n')[0]);
  } catch {
    return () => null;
  }
  return () => processTreeCpuMs(postmaster);
}

export async function count(client: pg.Client, text: string, params: unknown[] = []): Promise<number> {
  return Number((await client.query<{ count: string }>(text, params)).rows[0].count);
}
