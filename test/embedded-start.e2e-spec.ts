import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type BuiltApp,
  ensureBuilt,
  freePort,
  killAll,
  spawnBuiltApp,
  waitUntilReady,
  within,
} from './support/built-app.js';

describe('npm start (built service in its own process)', () => {
  let cwd: string;
  const apps: BuiltApp[] = [];

  beforeAll(ensureBuilt, 120_000);
  beforeEach(() => {
    cwd = mkdtempSync(join(tmpdir(), 'switchyard-start-'));
  });
  afterEach(() => {
    killAll(apps);
    rmSync(cwd, { recursive: true, force: true });
  });

  it('runs on embedded PGlite under ./data without DATABASE_URL, then exits 0 on SIGTERM', async () => {
    const app = spawnBuiltApp(cwd, { PORT: String(await freePort()), LOG_LEVEL: 'info', NODE_ENV: 'development' });
    apps.push(app);

    const ready = await waitUntilReady(app);
    expect(ready.body.info).toEqual({ database: { status: 'up' }, migrations: { status: 'up' } });
    expect(existsSync(join(cwd, 'data', 'secrets.key'))).toBe(true);
    expect(existsSync(join(cwd, 'data', 'pglite'))).toBe(true);

    app.child.kill('SIGTERM');
    const exit = await within(app.exited, 10_000, 'shutdown after SIGTERM');
    expect(exit, app.stderr()).toEqual({ code: 0, signal: null });
  }, 90_000);

  it.each([
    ['PORT', { PORT: 'abc' }],
    ['DELIVERY_RETRY_SCHEDULE', { DELIVERY_RETRY_SCHEDULE: '5x' }],
    ['SECRETS_KEY', { NODE_ENV: 'production' }],
  ])('refuses to start on a bad %s and names it on stderr', async (variable, env) => {
    const app = spawnBuiltApp(cwd, { NODE_ENV: 'development', ...env });
    apps.push(app);
    const exit = await within(app.exited, 20_000, 'exit on bad configuration');
    expect(exit.code).toBe(1);
    expect(app.stderr()).toContain(variable);
    // Refused before anything was created: no database, no generated key.
    expect(existsSync(join(cwd, 'data'))).toBe(false);
  });
});
