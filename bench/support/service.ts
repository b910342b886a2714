import { randomBytes } from 'node:crypto';
import { type ServerOptions, type ServerProcess, startServer } from './processes.js';

/**
 * The service's environment for a bench run: production mode on the given database, a fresh admin
 * token and secrets key, warn-level logs, and http callbacks to 127.0.0.1 allowed (the receivers
 * run on this host). `overrides` adds or replaces variables (pool size, delivery settings, …).
 */
export function serviceEnv(databaseUrl: string, overrides: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'production',
    DATABASE_URL: databaseUrl,
    ADMIN_TOKEN: randomBytes(24).toString('base64url'),
    SECRETS_KEY: randomBytes(32).toString('base64'),
    LOG_LEVEL: 'warn',
    ALLOW_HTTP_CALLBACKS: 'true',
    CALLBACK_ALLOWED_HOSTS: '127.0.0.1',
    ...overrides,
  };
}

/** The built service (`node dist/src/main.js`, as in production) as a child process, once it is ready. */
export function startService(env: Record<string, string>, options: ServerOptions = {}): Promise<ServerProcess> {
  return startServer('src/main.js', env, '/health/ready', options);
}
