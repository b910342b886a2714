import { startTestApp, type TestApp } from './support/app.js';
import { adminAuth, bearer, uniqueSlug } from './support/fixtures.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const SIGNING_SECRET = /^whsec_[A-Za-z0-9+/]{43}=$/;
const TOKEN = /^sy_[0-9A-Za-z]{40,}$/;
const UNKNOWN_ID = '00000000-0000-4000-8000-000000000000';

interface Row {
  id: string;
  createdAt: string;
}

describe('admin API', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  const post = (path: string, body?: object) => t.http.post(path).set(adminAuth).send(body);
  const get = (path: string) => t.http.get(path).set(adminAuth);
  const newTenant = async () => {
    const slug = uniqueSlug('tenant');
    return (await post('/api/tenants', { name: `Tenant ${slug}`, slug }).expect(201)).body as Row & { slug: string };
  };
  const newProject = async (tenantId: string, slug = uniqueSlug('project')) =>
    (await post(`/api/tenants/${tenantId}/projects`, { name: 'Project', slug }).expect(201)).body as Row;

  /** 400 VALIDATION_FAILED whose errors name exactly these fields. */
  const expectInvalid = (response: { status: number; body: any }, ...fields: string[]) => {
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({ statusCode: 400, code: 'VALIDATION_FAILED', message: expect.any(String) });
    expect([...new Set(response.body.errors.map((error: { field: string }) => error.field))].sort()).toEqual(
      [...fields].sort(),
    );
  };
  const expectNotFound = (response: { status: number; body: any }) => {
    expect(response.status).toBe(404);
    expect(response.body).toEqual({ statusCode: 404, code: 'NOT_FOUND', message: expect.any(String) });
  };
  const expectConflict = (response: { status: number; body: any }) => {
    expect(response.status).toBe(409);
    expect(response.body).toEqual({ statusCode: 409, code: 'CONFLICT', message: expect.any(String) });
  };

  /** Follows nextCursor to the end, checking every page's shape and the newest-first order. */
  const walk = async (path: string, limit: number) => {
    const seen: Row[] = [];
    let cursor: string | null = null;
    do {
      const query: string = `limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
      const page = await get(`${path}?${query}`).expect(200);
      expect(Object.keys(page.body).sort()).toEqual(['items', 'nextCursor']);
      expect(page.body.items.length).toBeLessThanOrEqual(limit);
      seen.push(...page.body.items);
      cursor = page.body.nextCursor;
    } while (cursor !== null);
    const newestFirst = [...seen].sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id));
    expect(seen).toEqual(newestFirst);
    return seen;
  };

  describe('tenants', () => {
    it('creates a tenant: 201 with exactly id, name, slug, createdAt', async () => {
      const slug = uniqueSlug('acme');
      const response = await post('/api/tenants', { name: 'Acme Corp', slug }).expect(201);
      expect(response.body).toEqual({
        id: expect.stringMatching(UUID),
        name: 'Acme Corp',
        slug,
        createdAt: expect.stringMatching(ISO),
      });
      await get(`/api/tenants/${response.body.id}`).expect(200, response.body);
    });

    it('keeps tenant slugs unique across the installation', async () => {
      const tenant = await newTenant();
      expectConflict(await post('/api/tenants', { name: 'Other', slug: tenant.slug }));
    });

    it('lists tenants page by page, with a total on request', async () => {
      const created = [await newTenant(), await newTenant(), await newTenant()];
      const all = await walk('/api/tenants', 2);
      expect(all.map((row) => row.id)).toEqual(expect.arrayContaining(created.map((row) => row.id)));
      expect(new Set(all.map((row) => row.id)).size).toBe(all.length);
      const withTotal = await get('/api/tenants?limit=1&includeTotal=true').expect(200);
      expect(withTotal.body.total).toBe(all.length);
      expect(withTotal.body.items).toEqual([all[0]]);
      const defaultPage = await get('/api/tenants').expect(200);
      expect(defaultPage.body).not.toHaveProperty('total');
    });

    it('answers 404 for an unknown or malformed id', async () => {
      expectNotFound(await get(`/api/tenants/${UNKNOWN_ID}`));
      expectNotFound(await get('/api/tenants/not-a-uuid'));
    });
  });

  describe('list parameters', () => {
    it.each(['0', '201', 'abc', '1.5', '-1'])('refuses limit=%s naming limit', async (limit) => {
      expectInvalid(await get(`/api/tenants?limit=${limit}`), 'limit');
    });

    it('accepts the bounds 1 and 200', async () => {
      await get('/api/tenants?limit=1').expect(200);
      await get('/api/tenants?limit=200').expect(200);
    });

    it.each(['garbage', 'eyJ4IjoxfQ', Buffer.from('["not a date","x"]').toString('base64url')])(
      'refuses cursor=%s naming cursor',
      async (cursor) => {
        expectInvalid(await get(`/api/tenants?cursor=${cursor}`), 'cursor');
      },
    );

    it('refuses includeTotal that is not a boolean, and unknown parameters', async () => {
      expectInvalid(await get('/api/tenants?includeTotal=yes'), 'includeTotal');
      expectInvalid(await get('/api/tenants?sort=name'), 'sort');
    });
  });

  describe('validation of names and slugs (tenants, projects and applications alike)', () => {
    let tenantId: string;
    let projectId: string;
    beforeAll(async () => {
      tenantId = (await newTenant()).id;
      projectId = (await newProject(tenantId)).id;
    });
    const collections = () => [
      '/api/tenants',
      `/api/tenants/${tenantId}/projects`,
      `/api/projects/${projectId}/applications`,
    ];

    it.each(['A b', '-a', 'a-', 'a--b', 'Abc', 'a_b', '', 'x'.repeat(65)])('refuses slug "%s"', async (slug) => {
      for (const path of collections()) expectInvalid(await post(path, { name: 'Name', slug }), 'slug');
    });

    it('accepts a 64-character slug and a 200-character name', async () => {
      for (const path of collections()) {
        const slug = `${uniqueSlug('s')}-`.padEnd(64, 'x');
        await post(path, { name: 'n'.repeat(200), slug }).expect(201);
      }
    });

    it('refuses a name that is empty, 201 characters long, missing or not a string', async () => {
      for (const path of collections()) {
        expectInvalid(await post(path, { name: '', slug: uniqueSlug() }), 'name');
        expectInvalid(await post(path, { name: 'n'.repeat(201), slug: uniqueSlug() }), 'name');
        expectInvalid(await post(path, { slug: uniqueSlug() }), 'name');
        expectInvalid(await post(path, { name: 42, slug: uniqueSlug() }), 'name');
      }
    });

    it('refuses unknown fields and server-assigned ones as unknown', async () => {
      for (const path of collections()) {
        for (const field of ['colour', 'id', 'tenantId', 'projectId', 'createdAt', 'signingSecret']) {
          const response = await post(path, { name: 'Name', slug: uniqueSlug(), [field]: 'x' });
          expectInvalid(response, field);
          expect(response.body.errors).toEqual([{ field, message: 'is not allowed' }]);
        }
      }
    });
  });

  describe('projects', () => {
    it('creates a project: 201 with exactly id, tenantId, name, slug, createdAt', async () => {
      const tenant = await newTenant();
      const response = await post(`/api/tenants/${tenant.id}/projects`, {
        name: 'E-commerce',
        slug: 'ecommerce',
      }).expect(201);
      expect(response.body).toEqual({
        id: expect.stringMatching(UUID),
        tenantId: tenant.id,
        name: 'E-commerce',
        slug: 'ecommerce',
        createdAt: expect.stringMatching(ISO),
      });
      await get(`/api/projects/${response.body.id}`).expect(200, response.body);
    });

    it('keeps slugs unique per tenant only', async () => {
      const [first, second] = [await newTenant(), await newTenant()];
      await newProject(first.id, 'shared');
      expectConflict(await post(`/api/tenants/${first.id}/projects`, { name: 'Again', slug: 'shared' }));
      await newProject(second.id, 'shared');
    });

    it('lists only the tenant’s projects, across pages, with a total', async () => {
      const tenant = await newTenant();
      const created = [];
      for (let i = 0; i < 5; i++) created.push(await newProject(tenant.id));
      await newProject((await newTenant()).id);
      const all = await walk(`/api/tenants/${tenant.id}/projects`, 2);
      expect(all.map((row) => row.id).sort()).toEqual(created.map((row) => row.id).sort());
      const firstPage = await get(`/api/tenants/${tenant.id}/projects?limit=2&includeTotal=true`).expect(200);
      expect(firstPage.body).toEqual({ items: all.slice(0, 2), nextCursor: expect.any(String), total: 5 });
      const exact = await get(`/api/tenants/${tenant.id}/projects?limit=5`).expect(200);
      expect(exact.body.nextCursor).toBeNull();
    });

    it('answers 404 for an unknown tenant or project', async () => {
      expectNotFound(await post(`/api/tenants/${UNKNOWN_ID}/projects`, { name: 'P', slug: 'p' }));
      expectNotFound(await post('/api/tenants/nope/projects', { name: 'P', slug: 'p' }));
      expectNotFound(await get(`/api/tenants/${UNKNOWN_ID}/projects`));
      expectNotFound(await get(`/api/projects/${UNKNOWN_ID}`));
      expectNotFound(await get('/api/projects/nope'));
    });
  });

  describe('applications', () => {
    let tenantId: string;
    let projectId: string;
    beforeAll(async () => {
      tenantId = (await newTenant()).id;
      projectId = (await newProject(tenantId)).id;
    });

    it('creates an application with its signing secret, shown once', async () => {
      const response = await post(`/api/projects/${projectId}/applications`, {
        name: 'Payment App',
        slug: 'payments',
      }).expect(201);
      expect(response.body).toEqual({
        id: expect.stringMatching(UUID),
        projectId,
        tenantId,
        name: 'Payment App',
        slug: 'payments',
        createdAt: expect.stringMatching(ISO),
        signingSecret: expect.stringMatching(SIGNING_SECRET),
      });
      const { signingSecret: _shownOnce, ...application } = response.body;
      await get(`/api/applications/${application.id}`).expect(200, application);
      const list = await get(`/api/projects/${projectId}/applications?includeTotal=true`).expect(200);
      expect(list.body).toEqual({ items: [application], nextCursor: null, total: 1 });
    });

    it('rotates the signing secret: 200 with a different one', async () => {
      const created = await post(`/api/projects/${projectId}/applications`, {
        name: 'Rotating',
        slug: uniqueSlug('app'),
      }).expect(201);
      const first = await post(`/api/applications/${created.body.id}/rotate-secret`).expect(200);
      expect(first.body).toEqual({ signingSecret: expect.stringMatching(SIGNING_SECRET) });
      expect(first.body.signingSecret).not.toBe(created.body.signingSecret);
      const second = await post(`/api/applications/${created.body.id}/rotate-secret`).expect(200);
      expect(second.body.signingSecret).not.toBe(first.body.signingSecret);
      expectNotFound(await post(`/api/applications/${UNKNOWN_ID}/rotate-secret`));
    });

    it('keeps slugs unique per project only', async () => {
      const otherProject = (await newProject(tenantId)).id;
      await post(`/api/projects/${projectId}/applications`, { name: 'A', slug: 'same' }).expect(201);
      expectConflict(await post(`/api/projects/${projectId}/applications`, { name: 'B', slug: 'same' }));
      await post(`/api/projects/${otherProject}/applications`, { name: 'C', slug: 'same' }).expect(201);
    });

    it('answers 404 for an unknown project or application', async () => {
      expectNotFound(await post(`/api/projects/${UNKNOWN_ID}/applications`, { name: 'A', slug: 'a' }));
      expectNotFound(await get(`/api/projects/${UNKNOWN_ID}/applications`));
      expectNotFound(await get(`/api/applications/${UNKNOWN_ID}`));
      expectNotFound(await get('/api/applications/123'));
    });
  });

  describe('machine users', () => {
    let tenantId: string;
    beforeAll(async () => {
      tenantId = (await newTenant()).id;
    });
    const createUser = (body: object, tenant = tenantId) => post(`/api/tenants/${tenant}/machine-users`, body);
    const patch = (id: string, body: object) => t.http.patch(`/api/machine-users/${id}`).set(adminAuth).send(body);

    it('creates one with a first token, enabled and with the backend role by default', async () => {
      const username = uniqueSlug('payment-service');
      const response = await createUser({ name: 'Payment Processing Service', username }).expect(201);
      expect(response.body).toEqual({
        generatedToken: expect.stringMatching(TOKEN),
        tokenId: expect.stringMatching(UUID),
        machineUser: {
          id: expect.stringMatching(UUID),
          tenantId,
          name: 'Payment Processing Service',
          username,
          enabled: true,
          roles: ['backend'],
          createdAt: expect.stringMatching(ISO),
        },
      });
      await get(`/api/machine-users/${response.body.machineUser.id}`).expect(200, response.body.machineUser);
    });

    it('takes roles and enabled when given', async () => {
      const response = await createUser({
        name: 'Ops',
        username: uniqueSlug('ops'),
        enabled: false,
        roles: ['operator', 'finance:approver'],
      }).expect(201);
      expect(response.body.machineUser).toMatchObject({ enabled: false, roles: ['operator', 'finance:approver'] });
    });

    it('keeps usernames unique per tenant only', async () => {
      const username = uniqueSlug('dup');
      await createUser({ name: 'One', username }).expect(201);
      expectConflict(await createUser({ name: 'Two', username }));
      await createUser({ name: 'Elsewhere', username }, (await newTenant()).id).expect(201);
    });

    it('validates the body', async () => {
      expectInvalid(await createUser({ name: 'X', username: 'has space' }), 'username');
      expectInvalid(await createUser({ name: 'X', username: 'u'.repeat(101) }), 'username');
      expectInvalid(await createUser({ name: '', username: uniqueSlug() }), 'name');
      expectInvalid(await createUser({ name: 'X' }), 'username');
      expectInvalid(await createUser({ name: 'X', username: uniqueSlug(), enabled: 'yes' }), 'enabled');
      expectInvalid(await createUser({ name: 'X', username: uniqueSlug(), roles: 'backend' }), 'roles');
      expectInvalid(await createUser({ name: 'X', username: uniqueSlug(), roles: ['a b'] }), 'roles');
      expectInvalid(await createUser({ name: 'X', username: uniqueSlug(), roles: ['x', 'x'] }), 'roles');
      for (const field of ['id', 'tenantId', 'createdAt', 'generatedToken', 'hashedKey']) {
        expectInvalid(await createUser({ name: 'X', username: uniqueSlug(), [field]: 'x' }), field);
      }
    });

    it('answers 404 for an unknown tenant or machine user', async () => {
      expectNotFound(await createUser({ name: 'X', username: 'x' }, UNKNOWN_ID));
      expectNotFound(await get(`/api/tenants/${UNKNOWN_ID}/machine-users`));
      expectNotFound(await get(`/api/machine-users/${UNKNOWN_ID}`));
      expectNotFound(await get('/api/machine-users/nope'));
      expectNotFound(await patch(UNKNOWN_ID, { name: 'X' }));
    });

    it('lists the tenant’s machine users, newest first', async () => {
      const tenant = (await newTenant()).id;
      const ids = [];
      for (let i = 0; i < 3; i++)
        ids.push((await createUser({ name: `U${i}`, username: `u${i}` }, tenant).expect(201)).body.machineUser.id);
      const all = await walk(`/api/tenants/${tenant}/machine-users`, 2);
      expect(all.map((row) => row.id).sort()).toEqual(ids.sort());
      expect(Object.keys(all[0]).sort()).toEqual([
        'createdAt',
        'enabled',
        'id',
        'name',
        'roles',
        'tenantId',
        'username',
      ]);
    });

    it('updates name, enabled and roles: 200 with the whole object', async () => {
      const created = (await createUser({ name: 'Before', username: uniqueSlug('patch') }).expect(201)).body
        .machineUser;
      const renamed = await patch(created.id, { name: 'After' }).expect(200);
      expect(renamed.body).toEqual({ ...created, name: 'After' });
      const changed = await patch(created.id, { enabled: false, roles: ['operator'] }).expect(200);
      expect(changed.body).toEqual({ ...created, name: 'After', enabled: false, roles: ['operator'] });
      await get(`/api/machine-users/${created.id}`).expect(200, changed.body);
      expectInvalid(await patch(created.id, { name: '' }), 'name');
      expectInvalid(await patch(created.id, { username: 'renamed' }), 'username');
      expectInvalid(await patch(created.id, { tenantId }), 'tenantId');
      expectInvalid(await patch(created.id, { enabled: 'no' }), 'enabled');
    });

    it('refuses null for name, enabled and roles (none of them is nullable) and changes nothing', async () => {
      const created = (await createUser({ name: 'Nulls', username: uniqueSlug('null') }).expect(201)).body.machineUser;
      for (const field of ['name', 'enabled', 'roles']) {
        expectInvalid(await patch(created.id, { [field]: null }), field);
        expectInvalid(await createUser({ name: 'X', username: uniqueSlug(), [field]: null }), field);
      }
      await get(`/api/machine-users/${created.id}`).expect(200, created);
    });

    describe('tokens', () => {
      let machineUserId: string;
      let firstTokenId: string;
      beforeAll(async () => {
        const created = (await createUser({ name: 'Rotating', username: uniqueSlug('rot') }).expect(201)).body;
        machineUserId = created.machineUser.id;
        firstTokenId = created.tokenId;
      });
      const tokensPath = () => `/api/machine-users/${machineUserId}/tokens`;
      const revoke = (tokenId: string, userId = machineUserId) =>
        t.http.delete(`/api/machine-users/${userId}/tokens/${tokenId}`).set(adminAuth);

      it('issues another token: 201 with generatedToken, tokenId, prefix (its first 10 characters), createdAt', async () => {
        const response = await post(tokensPath()).expect(201);
        expect(response.body).toEqual({
          generatedToken: expect.stringMatching(TOKEN),
          tokenId: expect.stringMatching(UUID),
          prefix: response.body.generatedToken.slice(0, 10),
          createdAt: expect.stringMatching(ISO),
        });
        expect(response.body.prefix).toHaveLength(10);
      });

      it('lists tokens without their secret, and keeps revoked ones with revokedAt', async () => {
        const issued = (await post(tokensPath()).expect(201)).body;
        await revoke(issued.tokenId).expect(204, '');
        const list = await get(`${tokensPath()}?includeTotal=true`).expect(200);
        expect(list.body.total).toBe(list.body.items.length);
        for (const token of list.body.items) {
          expect(Object.keys(token).sort()).toEqual(['createdAt', 'id', 'lastUsedAt', 'prefix', 'revokedAt']);
          expect(token.prefix).toMatch(/^sy_[0-9A-Za-z]{7}$/);
        }
        const revoked = list.body.items.find((token: { id: string }) => token.id === issued.tokenId);
        expect(revoked).toEqual({
          id: issued.tokenId,
          prefix: issued.prefix,
          createdAt: issued.createdAt,
          lastUsedAt: null,
          revokedAt: expect.stringMatching(ISO),
        });
        const first = list.body.items.find((token: { id: string }) => token.id === firstTokenId);
        expect(first.revokedAt).toBeNull();
        expect(list.body.items[0].id).toBe(issued.tokenId);
      });

      it('revoking twice keeps the first revocation time', async () => {
        const issued = (await post(tokensPath()).expect(201)).body;
        await revoke(issued.tokenId).expect(204);
        const before = (await get(`${tokensPath()}?limit=200`).expect(200)).body.items.find(
          (token: { id: string }) => token.id === issued.tokenId,
        );
        await revoke(issued.tokenId).expect(204);
        const after = (await get(`${tokensPath()}?limit=200`).expect(200)).body.items.find(
          (token: { id: string }) => token.id === issued.tokenId,
        );
        expect(after.revokedAt).toBe(before.revokedAt);
      });

      it('answers 404 for an unknown token, another user’s token, or an unknown user', async () => {
        expectNotFound(await revoke(UNKNOWN_ID));
        expectNotFound(await revoke('nope'));
        const other = (await createUser({ name: 'Other', username: uniqueSlug('other') }).expect(201)).body;
        expectNotFound(await revoke(other.tokenId));
        expectNotFound(await revoke(firstTokenId, other.machineUser.id));
        expectNotFound(await post(`/api/machine-users/${UNKNOWN_ID}/tokens`));
        expectNotFound(await get(`/api/machine-users/${UNKNOWN_ID}/tokens`));
      });
    });
  });
});

describe('admin API without ADMIN_TOKEN', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ env: { ADMIN_TOKEN: '' } });
  });
  afterAll(() => t.close());

  const routes: [method: 'get' | 'post' | 'patch' | 'delete', path: string][] = [
    ['post', '/api/tenants'],
    ['get', '/api/tenants'],
    ['get', `/api/tenants/${UNKNOWN_ID}`],
    ['post', `/api/tenants/${UNKNOWN_ID}/projects`],
    ['get', `/api/tenants/${UNKNOWN_ID}/projects`],
    ['get', `/api/projects/${UNKNOWN_ID}`],
    ['post', `/api/projects/${UNKNOWN_ID}/applications`],
    ['get', `/api/projects/${UNKNOWN_ID}/applications`],
    ['get', `/api/applications/${UNKNOWN_ID}`],
    ['post', `/api/applications/${UNKNOWN_ID}/rotate-secret`],
    ['post', `/api/tenants/${UNKNOWN_ID}/machine-users`],
    ['get', `/api/tenants/${UNKNOWN_ID}/machine-users`],
    ['get', `/api/machine-users/${UNKNOWN_ID}`],
    ['patch', `/api/machine-users/${UNKNOWN_ID}`],
    ['post', `/api/machine-users/${UNKNOWN_ID}/tokens`],
    ['get', `/api/machine-users/${UNKNOWN_ID}/tokens`],
    ['delete', `/api/machine-users/${UNKNOWN_ID}/tokens/${UNKNOWN_ID}`],
    ['post', '/graphql'],
  ];

  // Without an admin token the admin API must look absent, whatever credentials are sent:
  // nothing to probe, and nothing a machine token could reach.
  it.each(routes)('%s %s is 404', async (method, path) => {
    for (const headers of [{}, adminAuth, bearer('sy_' + 'x'.repeat(43))]) {
      const response = await t.http[method](path).set(headers).send({ name: 'X', slug: 'x' });
      expect(response.status).toBe(404);
      expect(response.body).toMatchObject({ statusCode: 404, code: 'NOT_FOUND' });
    }
  });
});
