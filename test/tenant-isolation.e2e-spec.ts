import { randomBytes } from 'node:crypto';
import { RegistryService } from '../src/registry/registry.service.js';
import { startTestApp, type TestApp } from './support/app.js';
import { bearer, type SeededTenant, seedTenant } from './support/fixtures.js';

/**
 * Nothing crosses tenants (SPEC §1–2): a machine user of tenant A who addresses an object of
 * tenant B by its id gets exactly the 404 an unknown id gets, and B's object stays as it was.
 *
 * One row per object type a machine user can reach. Add triggers, flows, executions and
 * deliveries here as their routes land; every row is run against every A role below.
 */
interface IsolationRow {
  type: string;
  /** Creates one object in tenant B, as B would, and returns its id. */
  createInB(t: TestApp, b: SeededTenant): Promise<string>;
  /** B's view of the object, compared before and after A's attempts (include what a route could change). */
  snapshotAsB(t: TestApp, b: SeededTenant, id: string): Promise<unknown>;
  /** The list a machine user of A would find it in. */
  listPath: string;
  /** Every route that addresses one object by id: read, change, delete and actions. */
  paths: {
    action: string;
    method: 'get' | 'post' | 'patch' | 'put' | 'delete';
    path: (id: string) => string;
    body?: object;
  }[];
}

const MATRIX: IsolationRow[] = [
  {
    type: 'backend',
    createInB: async (t, b) =>
      (
        await t.http
          .post('/api/machine/register-backend')
          .set(bearer(b.backendUser.token))
          .send({ name: `b-${randomBytes(4).toString('hex')}`, callbackUrl: 'https://93.184.215.14/b', runKeys: ['b'] })
          .expect(201)
      ).body.id,
    snapshotAsB: async (t, b, id) => ({
      backend: (await t.http.get(`/api/machine/backends/${id}`).set(bearer(b.backendUser.token)).expect(200)).body,
      // rotate-secret changes nothing visible in the backend itself: compare its secrets too.
      secrets: (await t.app.get(RegistryService).getDeliveryTarget(id))?.secrets,
    }),
    listPath: '/api/machine/backends?limit=200',
    paths: [
      { action: 'read', method: 'get', path: (id) => `/api/machine/backends/${id}` },
      {
        action: 'change',
        method: 'patch',
        path: (id) => `/api/machine/backends/${id}`,
        body: { name: 'taken-over', callbackUrl: 'https://93.184.215.15/a', enabled: false },
      },
      { action: 'rotate the secret of', method: 'post', path: (id) => `/api/machine/backends/${id}/rotate-secret` },
      { action: 'delete', method: 'delete', path: (id) => `/api/machine/backends/${id}` },
    ],
  },
];

const A_ROLES = ['operatorUser', 'backendUser'] as const;

describe('tenant isolation for machine users', () => {
  let t: TestApp;
  let a: SeededTenant;
  let b: SeededTenant;

  beforeAll(async () => {
    t = await startTestApp();
    [a, b] = [await seedTenant(t), await seedTenant(t)];
  });
  afterAll(() => t.close());

  for (const row of MATRIX) {
    describe(`${row.type}s`, () => {
      for (const role of A_ROLES) {
        for (const route of row.paths) {
          it(`A's ${role} trying to ${route.action} B's ${row.type} gets 404 NOT_FOUND and changes nothing`, async () => {
            const id = await row.createInB(t, b);
            const before = await row.snapshotAsB(t, b, id);

            const request = t.http[route.method](route.path(id)).set(bearer(a[role].token));
            const response = await (route.body ? request.send(route.body) : request);

            expect(response.status).toBe(404);
            expect(response.body).toEqual({ statusCode: 404, code: 'NOT_FOUND', message: expect.any(String) });
            expect(await row.snapshotAsB(t, b, id)).toEqual(before);
          });
        }
      }

      it.each(A_ROLES)("A's %s lists none of B's objects of this type", async (role) => {
        const ids = [await row.createInB(t, b), await row.createInB(t, b)];
        const listed = (await t.http.get(row.listPath).set(bearer(a[role].token)).expect(200)).body.items.map(
          (item: { id: string }) => item.id,
        );
        for (const id of ids) expect(listed).not.toContain(id);
        // B does see them, so the list is not merely empty for everyone.
        const listedByB = (await t.http.get(row.listPath).set(bearer(b.operatorUser.token)).expect(200)).body.items;
        expect(listedByB.map((item: { id: string }) => item.id)).toEqual(expect.arrayContaining(ids));
      });
    });
  }

  it("registering the name of B's backend from A creates A's own and leaves B's untouched", async () => {
    const name = `shared-${randomBytes(4).toString('hex')}`;
    const body = { name, callbackUrl: 'https://93.184.215.14/b', runKeys: ['b'] };
    const bs = (
      await t.http.post('/api/machine/register-backend').set(bearer(b.backendUser.token)).send(body).expect(201)
    ).body;
    const before = await MATRIX[0].snapshotAsB(t, b, bs.id);

    const as = await t.http
      .post('/api/machine/register-backend')
      .set(bearer(a.backendUser.token))
      .send({ ...body, callbackUrl: 'https://93.184.215.15/a' })
      .expect(201);

    expect(as.body.id).not.toBe(bs.id);
    expect(await MATRIX[0].snapshotAsB(t, b, bs.id)).toEqual(before);
  });

  it('the delivery façade routes a run key within the firing tenant only', async () => {
    const runKey = `iso.${randomBytes(3).toString('hex')}`;
    const id = await t.http
      .post('/api/machine/register-backend')
      .set(bearer(b.backendUser.token))
      .send({ name: `r-${randomBytes(4).toString('hex')}`, callbackUrl: 'https://93.184.215.14/b', runKeys: [runKey] })
      .expect(201)
      .then((response) => response.body.id as string);
    const registry = t.app.get(RegistryService);
    expect(await registry.findRoutableBackends(a.tenant.id, runKey)).toEqual([]);
    expect((await registry.findRoutableBackends(b.tenant.id, runKey)).map((backend) => backend.id)).toEqual([id]);
    expect(await registry.findBackend(a.tenant.id, id)).toBeNull();
  });
});
