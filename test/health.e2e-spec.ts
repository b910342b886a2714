import { startTestApp, type TestApp } from './support/app.js';

describe('health, errors and request ids', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('is live and ready once migrations are applied', async () => {
    await t.http.get('/health/live').expect(200, { status: 'ok' });
    const ready = await t.http.get('/health/ready').expect(200);
    expect(ready.body.info).toEqual({ database: { status: 'up' }, migrations: { status: 'up' } });
  });

  it('answers unknown routes with the error body, with or without credentials', async () => {
    const anonymous = await t.http.get('/api/nope').expect(404);
    expect(anonymous.body).toEqual({ statusCode: 404, code: 'NOT_FOUND', message: 'Route not found' });
    await t.http.delete('/health/live').set('authorization', 'Bearer whatever').expect(404);
  });

  it('echoes a given x-request-id and generates one otherwise', async () => {
    const given = await t.http.get('/health/live').set('x-request-id', 'req-123').expect(200);
    expect(given.headers['x-request-id']).toBe('req-123');
    const generated = await t.http.get('/health/live').expect(200);
    expect(generated.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});
