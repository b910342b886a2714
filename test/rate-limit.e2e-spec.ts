import { startTestApp, type TestApp } from './support/app.js';
import { bearer, createMachineUser, seedTenant, type SeededTenant } from './support/fixtures.js';

describe('rate limits (RATE_LIMIT_PER_MINUTE)', () => {
  let t: TestApp;
  let seed: SeededTenant;

  beforeAll(async () => {
    t = await startTestApp({ env: { RATE_LIMIT_PER_MINUTE: '10' } });
    seed = await seedTenant(t);
  });
  afterAll(() => t.close());

  it('limits each token across routes and answers 429 RATE_LIMITED with Retry-After', async () => {
    const token = bearer(seed.backendUser.token);
    for (let i = 0; i < 6; i++) await t.http.get('/api/machine/backends').set(token).expect(200);
    for (let i = 0; i < 4; i++) await t.http.get('/api/deliveries').set(token).expect(200);
    const limited = await t.http.get('/api/machine/backends').set(token).expect(429);
    expect(limited.body).toMatchObject({ statusCode: 429, code: 'RATE_LIMITED' });
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);

    // Another token (even of the same tenant) has its own budget; the admin token has its own too.
    const other = await createMachineUser(t, seed.tenant.id, ['backend']);
    await t.http.get('/api/machine/backends').set(bearer(other.token)).expect(200);
  });

  it('limits public routes per client IP and never health, metrics or docs', async () => {
    const unknownTrigger =
      '/api/automation/flow/00000000-0000-4000-8000-000000000000/trigger/00000000-0000-4000-8000-000000000001/activate';
    for (let i = 0; i < 10; i++) await t.http.get(unknownTrigger).expect(404);
    const limited = await t.http.get(unknownTrigger).expect(429);
    expect(limited.body.code).toBe('RATE_LIMITED');
    for (let i = 0; i < 10; i++) {
      await t.http.get('/health/live').expect(200);
      await t.http.get('/metrics').expect(200);
    }
  });
});
