import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import type TestAgent from 'supertest/lib/agent.js';
import { type AppConfig, parseConfig } from '../../src/config/app-config.js';
import { createApp } from '../../src/http/create-app.js';
import { createTestDatabase, type TestDatabase } from './database.js';

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';
export const TEST_SECRETS_KEY = Buffer.alloc(32, 7).toString('base64');

export interface TestApp {
  app: NestFastifyApplication;
  config: AppConfig;
  database: TestDatabase;
  /** supertest against the in-process server. */
  http: TestAgent;
  /** Base URL when started with `listen: true`. */
  baseUrl: string | null;
  close(): Promise<void>;
}

export interface TestAppOptions {
  env?: Record<string, string>;
  /** Reuse a database (several app instances on one database). */
  database?: TestDatabase;
  /** Listen on a loopback port (for clients other than supertest). */
  listen?: boolean;
}

/** Boots the real application (same createApp as production) on its own test database. */
export async function startTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const database = options.database ?? (await createTestDatabase());
  const dataDir = mkdtempSync(join(tmpdir(), 'switchyard-test-'));
  const config = parseConfig({
    NODE_ENV: 'test',
    DATABASE_URL: database.url ?? '',
    DATA_DIR: dataDir,
    SECRETS_KEY: TEST_SECRETS_KEY,
    ADMIN_TOKEN,
    LOG_LEVEL: 'silent',
    DATABASE_POOL_SIZE: '5',
    ...options.env,
  });
  const app = await createApp(config);
  let baseUrl: string | null = null;
  if (options.listen) {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.getHttpServer().address() as { port: number };
    baseUrl = `http://127.0.0.1:${address.port}`;
  } else {
    await app.init();
    await app.getHttpAdapter().getInstance().ready();
  }
  return {
    app,
    config,
    database,
    http: request(app.getHttpServer()),
    baseUrl,
    close: async () => {
      await app.close();
      if (!options.database) await database.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
