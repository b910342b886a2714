import { setTimeout as sleep } from 'node:timers/promises';
import { startTestApp, type TestApp } from './support/app.js';
import { adminAuth, bearer, createMachineUser, type SeededMachineUser, uniqueSlug } from './support/fixtures.js';

/** Any route a `backend` machine user may call; it reads nothing the test depends on. */
const MACHINE_ROUTE = '/api/machine/backends';
const ADMIN_ROUTE = '/api/tenants';

const unauthenticated = { statusCode: 401, code: 'UNAUTHENTICATED', message: expect.any(String) };
const forbidden = { statusCode: 403, code: 'FORBIDDEN', message: expect.any(String) };

async function newTenant(t: TestApp): Promise<string> {
  const slug = uniqueSlug('auth');
  return (await t.http.post('/api/tenants').set(adminAuth).send({ name: 'Auth', slug }).expect(201)).body.id;
}

describe('machine tokens on one replica', () => {
  let t: TestApp;
  let tenantId: string;
  beforeAll(async () => {
    // The default cache TTL (10 s): every "immediately" below must hold despite it.
    t = await startTestApp();
    tenantId = await newTenant(t);
  });
  afterAll(() => t.close());

  const callMachineRoute = (token: string) => t.http.get(MACHINE_ROUTE).set(bearer(token));
  const tokens = async (user: SeededMachineUser) =>
    (await t.http.get(`/api/machine-users/${user.machineUser.id}/tokens`).set(adminAuth).expect(200)).body.items as {
      id: string;
      lastUsedAt: string | null;
    }[];
  const setEnabled = (user: SeededMachineUser, enabled: boolean) =>
    t.http.patch(`/api/machine-users/${user.machineUser.id}`).set(adminAuth).send({ enabled }).expect(200);

  it('accepts the issued token and a second one issued for rotation', async () => {
    const user = await createMachineUser(t, tenantId);
    await callMachineRoute(user.token).expect(200);
    const second = await t.http.post(`/api/machine-users/${user.machineUser.id}/tokens`).set(adminAuth).expect(201);
    await callMachineRoute(second.body.generatedToken).expect(200);
    await callMachineRoute(user.token).expect(200);
  });

  it('rejects a revoked token at once, although it was just verified and cached, and keeps the others', async () => {
    const user = await createMachineUser(t, tenantId);
    const other = (await t.http.post(`/api/machine-users/${user.machineUser.id}/tokens`).set(adminAuth).expect(201))
      .body.generatedToken;
    await callMachineRoute(user.token).expect(200);
    await t.http.delete(`/api/machine-users/${user.machineUser.id}/tokens/${user.tokenId}`).set(adminAuth).expect(204);
    const rejected = await callMachineRoute(user.token).expect(401);
    expect(rejected.body).toEqual(unauthenticated);
    await callMachineRoute(other).expect(200);
  });

  it('rejects every token of a disabled machine user at once, and accepts them again once re-enabled', async () => {
    const user = await createMachineUser(t, tenantId);
    const second = (await t.http.post(`/api/machine-users/${user.machineUser.id}/tokens`).set(adminAuth).expect(201))
      .body.generatedToken;
    await callMachineRoute(user.token).expect(200);
    await callMachineRoute(second).expect(200);
    await setEnabled(user, false);
    expect((await callMachineRoute(user.token).expect(401)).body).toEqual(unauthenticated);
    await callMachineRoute(second).expect(401);
    await setEnabled(user, true);
    await callMachineRoute(user.token).expect(200);
    await callMachineRoute(second).expect(200);
  });

  it('a machine user created disabled cannot authenticate', async () => {
    const username = uniqueSlug('off');
    const created = await t.http
      .post(`/api/tenants/${tenantId}/machine-users`)
      .set(adminAuth)
      .send({ name: 'Off', username, enabled: false })
      .expect(201);
    await callMachineRoute(created.body.generatedToken).expect(401);
  });

  it('records lastUsedAt once the token is used', async () => {
    const user = await createMachineUser(t, tenantId);
    expect((await tokens(user))[0].lastUsedAt).toBeNull();
    const before = Date.now();
    await callMachineRoute(user.token).expect(200);
    // The write is fire-and-forget so it never slows or fails the request; poll for it.
    let lastUsedAt: string | null = null;
    for (let attempt = 0; attempt < 50 && lastUsedAt === null; attempt++) {
      lastUsedAt = (await tokens(user))[0].lastUsedAt;
      if (lastUsedAt === null) await sleep(20);
    }
    expect(lastUsedAt).not.toBeNull();
    expect(new Date(lastUsedAt!).getTime()).toBeGreaterThanOrEqual(before - 1_000);
  });

  it('keeps the admin API and the machine API apart (403 for the wrong kind of caller)', async () => {
    const user = await createMachineUser(t, tenantId, ['backend', 'operator']);
    const adminWithMachineToken = await t.http.get(ADMIN_ROUTE).set(bearer(user.token)).expect(403);
    expect(adminWithMachineToken.body).toEqual(forbidden);
    await t.http.post('/api/tenants').set(bearer(user.token)).send({ name: 'X', slug: uniqueSlug() }).expect(403);
    await t.http.get(`/api/machine-users/${user.machineUser.id}/tokens`).set(bearer(user.token)).expect(403);
    const machineWithAdminToken = await t.http.get(MACHINE_ROUTE).set(adminAuth).expect(403);
    expect(machineWithAdminToken.body).toEqual(forbidden);
  });

  describe('missing or malformed credentials are 401 with the error body', () => {
    const cases: [string, Record<string, string>][] = [
      ['no Authorization header', {}],
      ['an empty bearer token', { authorization: 'Bearer ' }],
      ['a garbage bearer token', { authorization: 'Bearer not-a-token' }],
      ['a well-formed but unknown token', { authorization: `Bearer sy_${'A'.repeat(43)}` }],
      ['Basic credentials', { authorization: `Basic ${Buffer.from('admin:password').toString('base64')}` }],
      ['a token without a scheme', { authorization: `sy_${'A'.repeat(43)}` }],
      ['a bearer token followed by junk', { authorization: `Bearer sy_${'A'.repeat(43)} extra` }],
    ];
    it.each(cases)('%s', async (_name, headers) => {
      for (const path of [MACHINE_ROUTE, ADMIN_ROUTE]) {
        const response = await t.http.get(path).set(headers).expect(401);
        expect(response.body).toEqual(unauthenticated);
      }
    });

    it('the admin token with a different case or a suffix is not the admin token', async () => {
      const token = adminAuth.authorization.slice('Bearer '.length);
      await t.http.get(ADMIN_ROUTE).set(bearer(token.toUpperCase())).expect(401);
      await t.http
        .get(ADMIN_ROUTE)
        .set(bearer(`${token}x`))
        .expect(401);
      await t.http
        .get(ADMIN_ROUTE)
        .set({ authorization: `bearer ${token}` })
        .expect(200);
    });
  });

  it('ignores a token in the query string or the body: tokens in URLs leak into logs', async () => {
    const user = await createMachineUser(t, tenantId);
    await callMachineRoute(user.token).expect(200);
    const inQuery = await t.http.get(`${MACHINE_ROUTE}?access_token=${user.token}`).expect(401);
    expect(inQuery.body).toEqual(unauthenticated);
    const admin = adminAuth.authorization.slice('Bearer '.length);
    await t.http.get(`${ADMIN_ROUTE}?access_token=${admin}`).expect(401);
    await t.http.post('/api/tenants').send({ access_token: admin, name: 'X', slug: uniqueSlug() }).expect(401);
  });
});

describe('revocation across replicas', () => {
  // Long enough that "still cached" below cannot flake on a slow machine, short enough to wait out.
  const TTL_MS = 1_000;
  let first: TestApp;
  let second: TestApp;
  beforeAll(async () => {
    first = await startTestApp({ env: { TOKEN_CACHE_TTL_MS: String(TTL_MS) } });
    second = await startTestApp({ database: first.database, env: { TOKEN_CACHE_TTL_MS: String(TTL_MS) } });
  });
  afterAll(async () => {
    await second?.close();
    await first?.close();
  });

  it('takes effect on the other replica within TOKEN_CACHE_TTL_MS', async () => {
    const tenantId = await newTenant(first);
    const user = await createMachineUser(first, tenantId);
    await second.http.get(MACHINE_ROUTE).set(bearer(user.token)).expect(200);
    const cachedAt = Date.now();

    await first.http
      .delete(`/api/machine-users/${user.machineUser.id}/tokens/${user.tokenId}`)
      .set(adminAuth)
      .expect(204);
    await first.http.get(MACHINE_ROUTE).set(bearer(user.token)).expect(401);
    // The replica that did not make the change still trusts its cache: this is the window.
    await second.http.get(MACHINE_ROUTE).set(bearer(user.token)).expect(200);

    await sleep(Math.max(0, cachedAt + TTL_MS + 100 - Date.now()));
    const rejected = await second.http.get(MACHINE_ROUTE).set(bearer(user.token)).expect(401);
    expect(rejected.body).toEqual(unauthenticated);
  });

  it('a machine user disabled on one replica is refused by the other within the TTL', async () => {
    const tenantId = await newTenant(first);
    const user = await createMachineUser(first, tenantId);
    await second.http.get(MACHINE_ROUTE).set(bearer(user.token)).expect(200);
    const cachedAt = Date.now();
    await first.http
      .patch(`/api/machine-users/${user.machineUser.id}`)
      .set(adminAuth)
      .send({ enabled: false })
      .expect(200);
    await sleep(Math.max(0, cachedAt + TTL_MS + 100 - Date.now()));
    await second.http.get(MACHINE_ROUTE).set(bearer(user.token)).expect(401);
  });
});
