import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_TOKEN, startTestApp, TEST_SECRETS_KEY, type TestApp } from './support/app.js';
import {
  type BuiltApp,
  ensureBuilt,
  freePort,
  killAll,
  spawnBuiltApp,
  waitUntilReady,
  within,
} from './support/built-app.js';
import { createTestDatabase, type TestDatabase } from './support/database.js';

describe('/metrics without METRICS_TOKEN', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('is open and reports request durations by route template', async () => {
    await t.http.get('/health/live').expect(200);
    const scrape = await t.http.get('/metrics').expect(200);
    expect(scrape.headers['content-type']).toMatch(/^text\/plain/);
    expect(scrape.text).toMatch(
      /^switchyard_http_request_duration_seconds_count\{[^}]*route="\/health\/live"[^}]*status_code="200"[^}]*\} [1-9]/m,
    );
    expect(scrape.text).toContain('switchyard_process_cpu_seconds_total');
  });

  it('serves Swagger UI at /docs and the OpenAPI document at /docs-json', async () => {
    const ui = await t.http.get('/docs').expect(200);
    expect(ui.headers['content-type']).toMatch(/^text\/html/);
    expect(ui.text).toContain('swagger');
    const doc = await t.http.get('/docs-json').expect(200);
    expect(doc.body.openapi).toMatch(/^3\./);
    expect(doc.body.paths['/health/ready']).toBeDefined();
    // Operations routes are documented; /metrics is deliberately left out.
    expect(doc.body.paths['/metrics']).toBeUndefined();
  });
});

describe('/metrics with METRICS_TOKEN', () => {
  const METRICS_TOKEN = 'scrape-token-0123456789';
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ env: { METRICS_TOKEN } });
  });
  afterAll(() => t.close());

  it.each([
    ['no token', undefined],
    ['a wrong token', 'Bearer scrape-token-wrong'],
    ['the admin token', `Bearer ${ADMIN_TOKEN}`],
    ['the token without Bearer', METRICS_TOKEN],
  ])('answers 401 with the error body to %s', async (_case, authorization) => {
    const request = t.http.get('/metrics');
    if (authorization) void request.set('authorization', authorization);
    const response = await request.expect(401);
    expect(response.body).toMatchObject({ statusCode: 401, code: 'UNAUTHENTICATED' });
    expect(response.text).not.toContain('switchyard_');
  });

  it('answers 200 with the metrics to Bearer $METRICS_TOKEN', async () => {
    const response = await t.http.get('/metrics').set('authorization', `Bearer ${METRICS_TOKEN}`).expect(200);
    expect(response.text).toContain('# TYPE switchyard_http_request_duration_seconds histogram');
  });
});

describe('structured logs of the running service', () => {
  const BEARER = 'sy_supersecret_0123456789abcdefghij';
  const USER_TOKEN = 'ut_also_secret_9876543210';
  let database: TestDatabase;
  let cwd: string;
  const apps: BuiltApp[] = [];
  let lines: Array<Record<string, any>>;
  let stdout: string;

  // Logs go to stdout as in production, so the service runs as its own process and we read them there.
  beforeAll(async () => {
    ensureBuilt();
    database = await createTestDatabase();
    cwd = mkdtempSync(join(tmpdir(), 'switchyard-logs-'));
    const app = spawnBuiltApp(cwd, {
      PORT: String(await freePort()),
      LOG_LEVEL: 'info',
      NODE_ENV: 'test',
      SECRETS_KEY: TEST_SECRETS_KEY,
      ADMIN_TOKEN,
      ...(database.url ? { DATABASE_URL: database.url, DATABASE_POOL_SIZE: '2' } : {}),
    });
    apps.push(app);
    await waitUntilReady(app);

    const call = (path: string, requestId: string) =>
      fetch(`${app.baseUrl}${path}`, {
        headers: { authorization: `Bearer ${BEARER}`, 'user-token': USER_TOKEN, 'x-request-id': requestId },
      });
    expect((await call('/health/live', 'log-test-public')).status).toBe(200);
    expect((await call('/api/tenants', 'log-test-refused')).status).toBe(401);
    expect((await call('/api/nope?token=in-query', 'log-test-unknown')).status).toBe(404);

    // Stopping flushes the logger; the lines are complete once the process has exited.
    app.child.kill('SIGTERM');
    await within(app.exited, 10_000, 'shutdown after SIGTERM');
    stdout = app.stdout();
    lines = stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, any>);
  }, 120_000);
  afterAll(async () => {
    killAll(apps);
    await database?.drop();
    if (cwd) rmSync(cwd, { recursive: true, force: true });
  });

  it('writes one JSON object per line', () => {
    const nonJson = stdout.split('\n').filter((line) => line.trim() !== '' && !line.startsWith('{'));
    expect(nonJson).toEqual([]);
    expect(lines.length).toBeGreaterThan(3);
  });

  it.each([
    ['log-test-public', 200],
    ['log-test-refused', 401],
    ['log-test-unknown', 404],
  ])('logs request %s with its x-request-id and status', (requestId, status) => {
    const completed = lines.filter((line) => line.req?.id === requestId && line.res?.statusCode);
    expect(completed).toHaveLength(1);
    expect(completed[0].res.statusCode).toBe(status);
    expect(completed[0].req.path).toMatch(/^\/[^?]*$/);
  });

  it('never writes a credential or a query string', () => {
    expect(stdout).not.toContain('supersecret');
    expect(stdout).not.toContain(USER_TOKEN);
    expect(stdout).not.toContain(ADMIN_TOKEN);
    expect(stdout).not.toContain(TEST_SECRETS_KEY);
    expect(stdout).not.toContain('in-query');
  });
});
