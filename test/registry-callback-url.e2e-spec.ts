import { randomBytes } from 'node:crypto';
import { startTestApp, type TestApp } from './support/app.js';
import { bearer, type SeededTenant, seedTenant } from './support/fixtures.js';

// Address literals and localhost only: none of these cases may depend on DNS.
const PUBLIC = 'https://93.184.215.14/switchyard/webhook';
const uniqueName = () => `backend-${randomBytes(4).toString('hex')}`;
const longUrl = (length: number) => {
  const prefix = 'https://93.184.215.14/';
  return prefix + 'p'.repeat(length - prefix.length);
};

interface Setup {
  t: TestApp;
  a: SeededTenant;
}

async function setUp(env?: Record<string, string>): Promise<Setup> {
  const t = await startTestApp({ env });
  return { t, a: await seedTenant(t) };
}

function registerWith({ t, a }: Setup, callbackUrl: unknown) {
  return t.http
    .post('/api/machine/register-backend')
    .set(bearer(a.backendUser.token))
    .send({ name: uniqueName(), callbackUrl });
}

describe('callbackUrl rules, default policy (https only, no private addresses)', () => {
  let setup: Setup;
  beforeAll(async () => {
    setup = await setUp();
  });
  afterAll(() => setup.t.close());

  it('accepts a public https URL, up to 2048 characters', async () => {
    await registerWith(setup, PUBLIC).expect(201);
    expect((await registerWith(setup, longUrl(2048)).expect(201)).body.callbackUrl).toHaveLength(2048);
  });

  it.each([
    ['http:// by default', 'http://93.184.215.14/hook', 'CALLBACK_URL_FORBIDDEN'],
    ['another scheme', 'ftp://93.184.215.14/hook', 'CALLBACK_URL_FORBIDDEN'],
    ['loopback without the allow-list', 'https://127.0.0.1/', 'CALLBACK_URL_FORBIDDEN'],
    ['localhost, which is never resolved', 'https://localhost/x', 'CALLBACK_URL_FORBIDDEN'],
    ['a private range', 'https://10.1.2.3/hook', 'CALLBACK_URL_FORBIDDEN'],
    ['the cloud metadata address', 'https://169.254.169.254/latest/meta-data', 'CALLBACK_URL_FORBIDDEN'],
    ['IPv6 loopback', 'https://[::1]/hook', 'CALLBACK_URL_FORBIDDEN'],
    ['credentials in the URL', 'https://user:secret@93.184.215.14/hook', 'CALLBACK_URL_FORBIDDEN'],
    ['something unparseable', 'not a url', 'INVALID_URL'],
    ['the empty string', '', 'INVALID_URL'],
  ])('refuses %s (%s) with %s', async (_case, callbackUrl, code) => {
    const response = await registerWith(setup, callbackUrl).expect(400);
    expect(response.body).toEqual({ statusCode: 400, code, message: expect.any(String) });
  });

  it('refuses a 2049-character URL with VALIDATION_FAILED naming callbackUrl', async () => {
    const response = await registerWith(setup, longUrl(2049)).expect(400);
    expect(response.body.code).toBe('VALIDATION_FAILED');
    expect(response.body.errors).toEqual([{ field: 'callbackUrl', message: expect.stringContaining('2048') }]);
  });

  it('holds for PATCH too, and a refused PATCH changes nothing', async () => {
    const { t, a } = setup;
    const backend = (await registerWith(setup, PUBLIC).expect(201)).body;
    const path = `/api/machine/backends/${backend.id}`;
    const cases: [string, string][] = [
      ['https://127.0.0.1/', 'CALLBACK_URL_FORBIDDEN'],
      ['not a url', 'INVALID_URL'],
      [longUrl(2049), 'VALIDATION_FAILED'],
    ];
    for (const [callbackUrl, code] of cases) {
      const response = await t.http.patch(path).set(bearer(a.backendUser.token)).send({ callbackUrl }).expect(400);
      expect(response.body.code).toBe(code);
    }
    expect((await t.http.get(path).set(bearer(a.backendUser.token)).expect(200)).body.callbackUrl).toBe(PUBLIC);
  });
});

describe('callbackUrl rules with ALLOW_HTTP_CALLBACKS and CALLBACK_ALLOWED_HOSTS=127.0.0.1', () => {
  let setup: Setup;
  beforeAll(async () => {
    setup = await setUp({ ALLOW_HTTP_CALLBACKS: 'true', CALLBACK_ALLOWED_HOSTS: '127.0.0.1' });
  });
  afterAll(() => setup.t.close());

  it.each(['http://127.0.0.1:8080/hook', 'https://127.0.0.1/hook', 'http://93.184.215.14/hook'])(
    'accepts %s',
    async (callbackUrl) => {
      expect((await registerWith(setup, callbackUrl).expect(201)).body.callbackUrl).toBe(callbackUrl);
    },
  );

  it.each([
    ['loopback outside the allow-list', 'http://127.0.0.2/hook'],
    ['a private range not allowed', 'http://10.1.2.3/hook'],
    ['localhost, allowed only by name', 'http://localhost:8080/hook'],
    ['a scheme other than http(s)', 'ftp://127.0.0.1/hook'],
  ])('still refuses %s with CALLBACK_URL_FORBIDDEN', async (_case, callbackUrl) => {
    expect((await registerWith(setup, callbackUrl).expect(400)).body.code).toBe('CALLBACK_URL_FORBIDDEN');
  });
});
