import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface TestDatabase {
  /** Null: no server was reachable and the app runs on embedded PGlite. */
  url: string | null;
  drop(): Promise<void>;
}

const SERVER_URL = process.env.TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
let warned = false;

/** A reachable PostgreSQL server, or null. In CI there is no fallback: an unreachable server fails. */
export async function serverAvailable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: SERVER_URL, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    return true;
  } catch (error) {
    if (process.env.CI) {
      throw new Error(
        `CI must test on PostgreSQL, but ${redact(SERVER_URL)} is unreachable: ${(error as Error).message}`,
      );
    }
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A fresh database per test file, dropped afterwards; PGlite (loudly) when no server answers. */
export async function createTestDatabase(): Promise<TestDatabase> {
  if (!(await serverAvailable())) {
    if (!warned) {
      warned = true;
      console.warn(
        `\n!!! No PostgreSQL at ${redact(SERVER_URL)}: falling back to embedded PGlite.\n` +
          '!!! Tests that need concurrent connections are SKIPPED. Set TEST_DATABASE_URL to run them.\n',
      );
    }
    return { url: null, drop: async () => undefined };
  }
  const name = `switchyard_test_${Date.now().toString(36)}_${randomBytes(4).toString('hex')}`;
  await admin(`create database ${name}`);
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: () => admin(`drop database if exists ${name} with (force)`),
  };
}

async function admin(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: SERVER_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

function redact(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
