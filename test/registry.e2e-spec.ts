import { randomBytes, randomUUID } from 'node:crypto';
import { MikroORM } from '@mikro-orm/postgresql';
import { MachinePrincipal } from '../src/auth/principal.js';
import { RegistryService } from '../src/registry/registry.service.js';
import { SigningSecretsService } from '../src/secrets/signing-secrets.service.js';
import { startTestApp, type TestApp } from './support/app.js';
import { adminAuth, bearer, createMachineUser, type SeededTenant, seedTenant } from './support/fixtures.js';

// A public address literal: passes the SSRF guard without DNS, and nothing ever calls it here.
const CALLBACK = 'https://93.184.215.14/switchyard/webhook';
const WHSEC = /^whsec_[A-Za-z0-9+/]{43}=$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const uniqueName = () => `backend-${randomBytes(4).toString('hex')}`;
const fields = (body: { errors?: { field: string }[] }) => (body.errors ?? []).map((error) => error.field);

describe('backend registry (machine API)', () => {
  let t: TestApp;
  let a: SeededTenant;
  let registry: RegistryService;

  const register = (token: string, body: object) =>
    t.http.post('/api/machine/register-backend').set(bearer(token)).send(body);
  const backendPath = (id: string) => `/api/machine/backends/${id}`;
  const getAs = (token: string, id: string) => t.http.get(backendPath(id)).set(bearer(token));
  const patchAs = (token: string, id: string, body: object) =>
    t.http.patch(backendPath(id)).set(bearer(token)).send(body);
  const created = async (token: string, body: object = {}) =>
    (await register(token, { name: uniqueName(), callbackUrl: CALLBACK, ...body }).expect(201)).body;

  /** Records every re-enable announcement, as the delivery engine's listener would see it. */
  const enabledAnnouncements: string[] = [];

  beforeAll(async () => {
    t = await startTestApp();
    a = await seedTenant(t);
    registry = t.app.get(RegistryService);
    registry.onBackendEnabled(async (_em, backendId) => {
      enabledAnnouncements.push(backendId);
    });
  });
  afterAll(() => t.close());

  describe('POST /api/machine/register-backend', () => {
    it('creates a backend and shows its signing secret once', async () => {
      const name = uniqueName();
      const response = await register(a.backendUser.token, { name, callbackUrl: CALLBACK }).expect(201);
      expect(response.body).toEqual({
        id: expect.stringMatching(UUID),
        name,
        callbackUrl: CALLBACK,
        description: null,
        runKeys: [],
        enabled: true,
        timeoutMs: null,
        machineUserId: a.backendUser.machineUser.id,
        createdAt: expect.stringMatching(ISO),
        signingSecret: expect.stringMatching(WHSEC),
      });
      const { signingSecret, ...backend } = response.body;
      expect((await getAs(a.backendUser.token, backend.id).expect(200)).body).toEqual(backend);
      expect((await registry.getDeliveryTarget(backend.id))?.secrets).toEqual([signingSecret]);
    });

    it('re-registering the same name updates and re-enables the backend, 200 without a secret', async () => {
      const first = await created(a.backendUser.token, { description: 'v1', runKeys: ['orders.sync'] });
      await patchAs(a.backendUser.token, first.id, { enabled: false }).expect(200);
      const announcedBefore = enabledAnnouncements.length;

      const again = await register(a.backendUser.token, {
        name: first.name,
        callbackUrl: 'https://93.184.215.14/v2',
        runKeys: ['billing:nightly'],
      }).expect(200);

      // description was not given, so it stays; runKeys was, so it is replaced.
      expect(again.body).toEqual({
        ...first,
        signingSecret: undefined,
        callbackUrl: 'https://93.184.215.14/v2',
        runKeys: ['billing:nightly'],
        enabled: true,
      });
      expect(again.body).not.toHaveProperty('signingSecret');
      expect(enabledAnnouncements.slice(announcedBefore)).toEqual([first.id]);
      expect((await registry.getDeliveryTarget(first.id))?.secrets).toEqual([first.signingSecret]);
    });

    it('re-registering an enabled backend announces nothing and can clear the description', async () => {
      const first = await created(a.backendUser.token, { description: 'to be cleared' });
      const announcedBefore = enabledAnnouncements.length;
      const again = await register(a.backendUser.token, {
        name: first.name,
        callbackUrl: CALLBACK,
        description: null,
      }).expect(200);
      expect(again.body.description).toBeNull();
      expect(enabledAnnouncements.length).toBe(announcedBefore);
    });

    it('scopes names per machine user: another user registering the same name gets its own backend', async () => {
      const mine = await created(a.backendUser.token);
      const theirs = await created(a.operatorUser.token, { name: mine.name });
      expect(theirs.id).not.toBe(mine.id);
      expect(theirs.machineUserId).toBe(a.operatorUser.machineUser.id);
    });

    it('accepts the documented limits', async () => {
      const body = await created(a.backendUser.token, {
        name: 'n'.repeat(200),
        description: 'd'.repeat(2000),
        runKeys: ['k'.repeat(100), ...Array.from({ length: 99 }, (_, index) => `key.${index}`)],
      });
      expect(body.runKeys).toHaveLength(100);
    });

    it.each([
      ['a missing name and callbackUrl', {}, ['name', 'callbackUrl']],
      ['an empty name', { name: '', callbackUrl: CALLBACK }, ['name']],
      ['a 201-character name', { name: 'n'.repeat(201), callbackUrl: CALLBACK }, ['name']],
      ['a non-string callbackUrl', { name: 'x', callbackUrl: 42 }, ['callbackUrl']],
      [
        'a 2001-character description',
        { name: 'x', callbackUrl: CALLBACK, description: 'd'.repeat(2001) },
        ['description'],
      ],
      ['runKeys that is not an array', { name: 'x', callbackUrl: CALLBACK, runKeys: 'orders' }, ['runKeys']],
      ['runKeys null', { name: 'x', callbackUrl: CALLBACK, runKeys: null }, ['runKeys']],
      [
        '101 runKeys',
        { name: 'x', callbackUrl: CALLBACK, runKeys: Array.from({ length: 101 }, (_, i) => `k${i}`) },
        ['runKeys'],
      ],
      [
        'bad and repeated runKeys',
        { name: 'x', callbackUrl: CALLBACK, runKeys: ['ok', 'has space', 'ok', 5] },
        ['runKeys[1]', 'runKeys[2]', 'runKeys[3]'],
      ],
      ['a server-assigned field', { name: 'x', callbackUrl: CALLBACK, signingSecret: 'whsec_x' }, ['signingSecret']],
      ['an unknown field', { name: 'x', callbackUrl: CALLBACK, retries: 3 }, ['retries']],
      ['a body that is an array', [], ['body']],
    ])('refuses %s with VALIDATION_FAILED naming the fields', async (_case, body, expected) => {
      const response = await register(a.backendUser.token, body).expect(400);
      expect(response.body.code).toBe('VALIDATION_FAILED');
      expect([...new Set(fields(response.body))]).toEqual(expected);
    });
  });

  describe('GET /api/machine/backends', () => {
    it('pages newest first with limit, cursor and includeTotal', async () => {
      const owner = await createMachineUser(t, a.tenant.id, ['backend']);
      // Apart by a few milliseconds: rows created in the same millisecond are ordered by id instead.
      const createdApart = async () => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return created(owner.token);
      };
      const [oldest, middle, newest] = [await createdApart(), await createdApart(), await createdApart()];
      const list = (query: string) => t.http.get(`/api/machine/backends?${query}`).set(bearer(owner.token)).expect(200);

      const first = await list('limit=2&includeTotal=true');
      expect(first.body.items.map((item: { id: string }) => item.id)).toEqual([newest.id, middle.id]);
      expect(first.body.total).toBe(3);
      expect(first.body.nextCursor).toEqual(expect.any(String));

      const second = await list(`limit=2&cursor=${first.body.nextCursor}`);
      expect(second.body).toEqual({ items: [{ ...oldest, signingSecret: undefined }], nextCursor: null });
      expect(second.body.items[0]).not.toHaveProperty('signingSecret');
      expect(second.body).not.toHaveProperty('total');
    });

    it.each([
      ['cursor=garbage', 'cursor'],
      [`cursor=${Buffer.from('["not a date","x"]').toString('base64url')}`, 'cursor'],
      ['limit=0', 'limit'],
      ['limit=201', 'limit'],
      ['limit=abc', 'limit'],
      ['includeTotal=maybe', 'includeTotal'],
      ['sort=name', 'sort'],
    ])('refuses ?%s with VALIDATION_FAILED naming %s', async (query, field) => {
      const response = await t.http.get(`/api/machine/backends?${query}`).set(bearer(a.operatorUser.token)).expect(400);
      expect(response.body.code).toBe('VALIDATION_FAILED');
      expect(fields(response.body)).toContain(field);
    });
  });

  describe('GET|PATCH|DELETE /api/machine/backends/:id', () => {
    it.each([
      ['an unknown id', randomUUID()],
      ['a non-UUID id', 'not-a-uuid'],
    ])('answers 404 NOT_FOUND for %s on every route', async (_case, id) => {
      const token = a.operatorUser.token;
      for (const response of [
        await getAs(token, id),
        await patchAs(token, id, { enabled: true }),
        await t.http.delete(backendPath(id)).set(bearer(token)),
        await t.http.post(`${backendPath(id)}/rotate-secret`).set(bearer(token)),
      ]) {
        expect(response.status).toBe(404);
        expect(response.body).toEqual({ statusCode: 404, code: 'NOT_FOUND', message: expect.any(String) });
      }
    });

    it('PATCH changes every field and answers the whole object', async () => {
      const backend = await created(a.backendUser.token, { description: 'before', runKeys: ['a'] });
      const changes = {
        name: uniqueName(),
        callbackUrl: 'https://93.184.215.14/renamed',
        description: 'after',
        runKeys: ['b', 'c'],
        enabled: false,
      };
      const { signingSecret: _secret, ...unchanged } = backend;
      const expected = { ...unchanged, ...changes };
      expect((await patchAs(a.backendUser.token, backend.id, changes).expect(200)).body).toEqual(expected);
      expect((await getAs(a.backendUser.token, backend.id).expect(200)).body).toEqual(expected);
      // An empty PATCH changes nothing; null clears the nullable description.
      expect((await patchAs(a.backendUser.token, backend.id, {}).expect(200)).body).toEqual(expected);
      const cleared = await patchAs(a.backendUser.token, backend.id, { description: null }).expect(200);
      expect(cleared.body).toEqual({ ...expected, description: null });
    });

    it.each([
      [{ name: null }, ['name']],
      [{ callbackUrl: null }, ['callbackUrl']],
      [{ enabled: 'yes' }, ['enabled']],
      [{ runKeys: ['x', 'x'] }, ['runKeys[1]']],
      [{ id: randomUUID() }, ['id']],
      [{ machineUserId: randomUUID() }, ['machineUserId']],
    ])('PATCH %j is VALIDATION_FAILED and changes nothing', async (body, expected) => {
      const backend = await created(a.backendUser.token);
      const response = await patchAs(a.backendUser.token, backend.id, body).expect(400);
      expect(response.body.code).toBe('VALIDATION_FAILED');
      expect([...new Set(fields(response.body))]).toEqual(expected);
      const { signingSecret: _secret, ...stored } = backend;
      expect((await getAs(a.backendUser.token, backend.id).expect(200)).body).toEqual(stored);
    });

    it('PATCH enabled: true on a disabled backend announces the re-enable once', async () => {
      const backend = await created(a.backendUser.token);
      const announcedBefore = enabledAnnouncements.length;
      await patchAs(a.backendUser.token, backend.id, { enabled: false }).expect(200);
      await patchAs(a.backendUser.token, backend.id, { enabled: true }).expect(200);
      await patchAs(a.backendUser.token, backend.id, { enabled: true }).expect(200);
      expect(enabledAnnouncements.slice(announcedBefore)).toEqual([backend.id]);
    });

    it('a failing re-enable listener rolls the switch back', async () => {
      const backend = await created(a.backendUser.token);
      await patchAs(a.backendUser.token, backend.id, { enabled: false }).expect(200);
      const unsubscribe = registry.onBackendEnabled(async () => {
        throw new Error('re-queue failed');
      });
      try {
        await patchAs(a.backendUser.token, backend.id, { enabled: true }).expect(500);
      } finally {
        unsubscribe();
      }
      expect((await getAs(a.backendUser.token, backend.id).expect(200)).body.enabled).toBe(false);
    });

    it('renaming to a name the owner already has is 409 CONFLICT, for the owner and for an operator', async () => {
      const taken = await created(a.backendUser.token);
      const other = await created(a.backendUser.token);
      for (const token of [a.backendUser.token, a.operatorUser.token]) {
        const response = await patchAs(token, other.id, { name: taken.name }).expect(409);
        expect(response.body).toEqual({ statusCode: 409, code: 'CONFLICT', message: expect.any(String) });
      }
      expect((await getAs(a.backendUser.token, other.id).expect(200)).body.name).toBe(other.name);
    });

    it('DELETE answers 204 and removes the backend with all its signing secrets', async () => {
      const backend = await created(a.backendUser.token);
      await t.http
        .post(`${backendPath(backend.id)}/rotate-secret`)
        .set(bearer(a.backendUser.token))
        .expect(200);

      const response = await t.http.delete(backendPath(backend.id)).set(bearer(a.backendUser.token)).expect(204);
      expect(response.text).toBe('');
      await getAs(a.backendUser.token, backend.id).expect(404);
      await t.http.delete(backendPath(backend.id)).set(bearer(a.backendUser.token)).expect(404);
      expect(await registry.getDeliveryTarget(backend.id)).toBeNull();
      // removeAll drops the rotated-out secret too, not just the ones still valid.
      const [{ count }] = await t.app
        .get(MikroORM)
        .em.fork()
        .execute<{ count: string }[]>('select count(*) from signing_secrets where owner_id = ?', [backend.id]);
      expect(Number(count)).toBe(0);
    });
  });

  describe('POST /api/machine/backends/:id/rotate-secret', () => {
    it('issues a new secret; the old ones keep signing alongside, newest first', async () => {
      const backend = await created(a.backendUser.token);
      const rotate = () =>
        t.http
          .post(`${backendPath(backend.id)}/rotate-secret`)
          .set(bearer(a.backendUser.token))
          .expect(200);

      const second = (await rotate()).body;
      expect(second).toEqual({ signingSecret: expect.stringMatching(WHSEC) });
      expect(second.signingSecret).not.toBe(backend.signingSecret);
      expect(await t.app.get(SigningSecretsService).validSecrets(backend.id)).toEqual([
        second.signingSecret,
        backend.signingSecret,
      ]);

      const third = (await rotate()).body;
      expect((await registry.getDeliveryTarget(backend.id))?.secrets).toEqual([
        third.signingSecret,
        second.signingSecret,
        backend.signingSecret,
      ]);
    });
  });

  describe('authentication and roles', () => {
    const routes = (id: string) =>
      [
        { method: 'post', path: '/api/machine/register-backend', body: { name: 'x', callbackUrl: CALLBACK } },
        { method: 'get', path: '/api/machine/backends' },
        { method: 'get', path: backendPath(id) },
        { method: 'patch', path: backendPath(id), body: { enabled: true } },
        { method: 'delete', path: backendPath(id) },
        { method: 'post', path: `${backendPath(id)}/rotate-secret` },
      ] as const;

    const call = (route: ReturnType<typeof routes>[number], headers: Record<string, string>) => {
      const request = t.http[route.method](route.path).set(headers);
      return 'body' in route ? request.send(route.body) : request;
    };

    it.each([
      ['no token', {}, 401, 'UNAUTHENTICATED'],
      ['a bad token', bearer('sy_not-a-real-token'), 401, 'UNAUTHENTICATED'],
      ['the admin token', adminAuth, 403, 'FORBIDDEN'],
    ] as const)('answers %s with %i %s on every route', async (_case, headers, status, code) => {
      const backend = await created(a.backendUser.token);
      for (const route of routes(backend.id)) {
        const response = await call(route, headers);
        expect([route.method, route.path, response.status, response.body.code]).toEqual([
          route.method,
          route.path,
          status,
          code,
        ]);
      }
      await getAs(a.backendUser.token, backend.id).expect(200);
    });

    it('refuses a machine user holding neither backend nor operator with 403', async () => {
      const auditor = await createMachineUser(t, a.tenant.id, ['auditor']);
      const backend = await created(a.backendUser.token);
      for (const route of routes(backend.id)) {
        expect((await call(route, bearer(auditor.token))).status).toBe(403);
      }
    });
  });

  describe('who sees which backend', () => {
    it('a backend-only user sees and manages only its own; an operator the whole tenant', async () => {
      const alice = await createMachineUser(t, a.tenant.id, ['backend']);
      const bob = await createMachineUser(t, a.tenant.id, ['backend']);
      const alices = await created(alice.token);
      const bobs = await created(bob.token);
      const ids = async (token: string) =>
        (await t.http.get('/api/machine/backends?limit=200').set(bearer(token)).expect(200)).body.items.map(
          (item: { id: string }) => item.id,
        );

      expect(await ids(alice.token)).toEqual([alices.id]);
      expect(await ids(bob.token)).toEqual([bobs.id]);
      expect(await ids(a.operatorUser.token)).toEqual(expect.arrayContaining([alices.id, bobs.id]));

      await getAs(bob.token, alices.id).expect(404);
      await patchAs(bob.token, alices.id, { enabled: false }).expect(404);
      await t.http
        .post(`${backendPath(alices.id)}/rotate-secret`)
        .set(bearer(bob.token))
        .expect(404);
      await t.http.delete(backendPath(alices.id)).set(bearer(bob.token)).expect(404);
      expect((await getAs(alice.token, alices.id).expect(200)).body.enabled).toBe(true);

      // The operator manages it without taking it over.
      const patched = await patchAs(a.operatorUser.token, alices.id, { description: 'by operator' }).expect(200);
      expect(patched.body.machineUserId).toBe(alice.machineUser.id);
      await t.http
        .post(`${backendPath(alices.id)}/rotate-secret`)
        .set(bearer(a.operatorUser.token))
        .expect(200);
      await t.http.delete(backendPath(bobs.id)).set(bearer(a.operatorUser.token)).expect(204);
    });

    it('a user holding both roles manages the whole tenant', async () => {
      const both = await createMachineUser(t, a.tenant.id, ['backend', 'operator']);
      const someoneElses = await created(a.backendUser.token);
      await getAs(both.token, someoneElses.id).expect(200);
    });
  });

  it('documents the routes in the OpenAPI document, with both answers of register-backend', async () => {
    const document = (await t.http.get('/docs-json').expect(200)).body;
    const registerResponses = document.paths['/api/machine/register-backend'].post.responses;
    expect(Object.keys(registerResponses)).toEqual(expect.arrayContaining(['200', '201', '400', '401', '403']));
    expect(Object.keys(document.paths['/api/machine/backends/{id}'])).toEqual(
      expect.arrayContaining(['get', 'patch', 'delete']),
    );
    expect(document.paths['/api/machine/backends/{id}/rotate-secret'].post.responses).toHaveProperty('200');
  });

  describe('RegistryService façade', () => {
    it('routes a run key to the enabled backends of that tenant only', async () => {
      const b = await seedTenant(t);
      const runKey = `route.${randomBytes(3).toString('hex')}`;
      const listening = await created(a.backendUser.token, { runKeys: ['other', runKey] });
      const alsoListening = await created(a.operatorUser.token, { runKeys: [runKey] });
      const disabled = await created(a.backendUser.token, { runKeys: [runKey] });
      await patchAs(a.backendUser.token, disabled.id, { enabled: false }).expect(200);
      await created(a.backendUser.token, { runKeys: [`${runKey}.suffix`] });
      await created(b.backendUser.token, { runKeys: [runKey] });

      const routed = await registry.findRoutableBackends(a.tenant.id, runKey);
      expect(routed).toEqual([
        {
          id: listening.id,
          tenantId: a.tenant.id,
          machineUserId: a.backendUser.machineUser.id,
          name: listening.name,
          callbackUrl: CALLBACK,
        },
        expect.objectContaining({ id: alsoListening.id }),
      ]);
      expect(await registry.findRoutableBackends(a.tenant.id, 'nobody.listens')).toEqual([]);
    });

    it('disableBackend switches a backend off once, in the caller’s transaction', async () => {
      const backend = await created(a.backendUser.token);
      const em = t.app.get(MikroORM).em.fork();
      expect(await em.transactional((tx) => registry.disableBackend(tx, backend.id))).toBe(true);
      expect(await em.transactional((tx) => registry.disableBackend(tx, backend.id))).toBe(false);
      expect(await registry.getDeliveryTarget(backend.id)).toEqual({
        id: backend.id,
        tenantId: a.tenant.id,
        callbackUrl: CALLBACK,
        enabled: false,
        timeoutMs: null,
        secrets: [backend.signingSecret],
      });
    });

    it('findBackend, findAccessibleBackend and ownedBackendIds respect tenant and ownership', async () => {
      const b = await seedTenant(t);
      const owner = await createMachineUser(t, a.tenant.id, ['backend']);
      const backend = await created(owner.token);
      const summary = {
        id: backend.id,
        tenantId: a.tenant.id,
        machineUserId: owner.machineUser.id,
        name: backend.name,
        callbackUrl: backend.callbackUrl,
        enabled: true,
      };
      expect(await registry.findBackend(a.tenant.id, backend.id)).toEqual(summary);
      expect(await registry.findBackend(b.tenant.id, backend.id)).toBeNull();
      expect(await registry.ownedBackendIds(principalOf(owner))).toEqual([backend.id]);
      expect(await registry.findAccessibleBackend(principalOf(a.operatorUser), backend.id)).toEqual(summary);
      await expect(registry.findAccessibleBackend(principalOf(a.backendUser), backend.id)).rejects.toMatchObject({
        code: 'NOT_FOUND',
      });
      await expect(registry.findAccessibleBackend(principalOf(b.operatorUser), backend.id)).rejects.toMatchObject({
        code: 'NOT_FOUND',
      });
    });
  });
});

/** The principal the auth guard would build for a seeded machine user. */
function principalOf(user: SeededTenant['backendUser']) {
  const { id, tenantId, username, name, roles } = user.machineUser;
  return new MachinePrincipal(tenantId, id, user.tokenId, username, name, roles);
}
