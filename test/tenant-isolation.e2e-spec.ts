import { randomBytes, randomUUID } from 'node:crypto';
import { MikroORM } from '@mikro-orm/postgresql';
import { DeliveryService } from '../src/delivery/delivery.service.js';
import { RegistryService } from '../src/registry/registry.service.js';
import { startTestApp, type TestApp } from './support/app.js';
import { bearer, type SeededTenant, seedTenant } from './support/fixtures.js';
import { FlowsClient } from './support/flows.js';

/**
 * Nothing crosses tenants (SPEC §1–2): a machine user of tenant A who addresses an object of
 * tenant B by its id gets exactly the 404 an unknown id gets, and B's object stays as it was.
 *
 * One row per object type a machine user can reach. Add flows and executions here as their
 * routes land; every row is run against every A role below (or only the roles it names).
 */
interface IsolationRow {
  type: string;
  /** Creates one object in tenant B, as B would, and returns its id. */
  createInB(t: TestApp, b: SeededTenant): Promise<string>;
  /** B's view of the object, compared before and after A's attempts (include what a route could change). */
  snapshotAsB(t: TestApp, b: SeededTenant, id: string): Promise<unknown>;
  /** The list a machine user of A would find it in (none for objects listed per application). */
  listPath?: string;
  /**
   * Which of A's machine users try (default: all). A route that needs the operator role answers a
   * backend-only user 403 before it looks anything up, which reveals nothing either.
   */
  roles?: readonly (typeof A_ROLES)[number][];
  /** Every route that addresses one object by id: read, change, delete and actions. */
  paths: {
    action: string;
    method: 'get' | 'post' | 'patch' | 'put' | 'delete';
    path: (id: string) => string;
    body?: object;
  }[];
}

const A_ROLES = ['operatorUser', 'backendUser'] as const;

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
      {
        action: 'recover the deliveries of',
        method: 'post',
        path: (id) => `/api/machine/backends/${id}/recover`,
        body: { since: '2020-01-01T00:00:00Z' },
      },
    ],
  },
  {
    type: 'delivery',
    // Parked (its backend is disabled), so it holds still: a replay that got through would show as PENDING.
    createInB: async (t, b) => {
      const backendId = (
        await t.http
          .post('/api/machine/register-backend')
          .set(bearer(b.backendUser.token))
          .send({ name: `d-${randomBytes(4).toString('hex')}`, callbackUrl: 'https://93.184.215.14/b' })
          .expect(201)
      ).body.id;
      await t.http
        .patch(`/api/machine/backends/${backendId}`)
        .set(bearer(b.backendUser.token))
        .send({ enabled: false })
        .expect(200);
      const delivery = await t.app
        .get(MikroORM)
        .em.fork()
        .transactional((em) =>
          t.app.get(DeliveryService).enqueue(em, {
            tenantId: b.tenant.id,
            target: { backendId },
            body: '{"tenant":"b"}',
            origin: { type: 'trigger_run', id: randomUUID() },
          }),
        );
      return delivery.id;
    },
    snapshotAsB: async (t, b, id) =>
      (await t.http.get(`/api/deliveries/${id}`).set(bearer(b.operatorUser.token)).expect(200)).body,
    listPath: '/api/deliveries?limit=200',
    paths: [
      { action: 'read', method: 'get', path: (id) => `/api/deliveries/${id}` },
      { action: 'replay', method: 'post', path: (id) => `/api/deliveries/${id}/replay` },
    ],
  },
  {
    type: 'cron trigger',
    createInB: async (t, b) =>
      (
        await t.http
          .post(`/api/applications/${b.application.id}/triggers`)
          .set(bearer(b.operatorUser.token))
          .send({ name: `t-${randomBytes(4).toString('hex')}`, cronExpression: '0 0 1 1 *', runKey: 'b' })
          .expect(201)
      ).body.id,
    // The trigger and its runs: `run` would add one, PATCH or DELETE would change or remove it.
    snapshotAsB: async (t, b, id) => ({
      trigger: (await t.http.get(`/api/triggers/${id}`).set(bearer(b.operatorUser.token)).expect(200)).body,
      runs: (await t.http.get(`/api/triggers/${id}/runs`).set(bearer(b.operatorUser.token)).expect(200)).body,
    }),
    roles: ['operatorUser'],
    paths: [
      { action: 'read', method: 'get', path: (id) => `/api/triggers/${id}` },
      {
        action: 'change',
        method: 'patch',
        path: (id) => `/api/triggers/${id}`,
        body: { name: 'taken-over', cronExpression: '* * * * * *', enabled: false },
      },
      { action: 'delete', method: 'delete', path: (id) => `/api/triggers/${id}` },
      { action: 'fire', method: 'post', path: (id) => `/api/triggers/${id}/run` },
      { action: 'list the runs of', method: 'get', path: (id) => `/api/triggers/${id}/runs` },
    ],
  },
  {
    type: 'flow',
    createInB: async (t, b) =>
      (
        await new FlowsClient(t, b).create([
          { type: 'callback', name: 'Start' },
          { type: 'callback', name: 'Wait' },
        ])
      ).id,
    // The flow (a PUT would make version 2) and its executions (a start would add one).
    snapshotAsB: async (t, b, id) => ({
      flow: (await t.http.get(`/api/flows/${id}`).set(bearer(b.operatorUser.token)).expect(200)).body,
      executions: (await t.http.get(`/api/flows/${id}/executions`).set(bearer(b.operatorUser.token)).expect(200)).body,
    }),
    roles: ['operatorUser'],
    paths: [
      { action: 'read', method: 'get', path: (id) => `/api/flows/${id}` },
      {
        action: 'replace',
        method: 'put',
        path: (id) => `/api/flows/${id}`,
        body: { name: 'taken-over', steps: [{ type: 'callback', name: 'Mine' }] },
      },
      {
        action: 'start an execution of',
        method: 'post',
        path: (id) => `/api/flows/${id}/executions`,
        body: { input: { from: 'a' } },
      },
      { action: 'list the executions of', method: 'get', path: (id) => `/api/flows/${id}/executions` },
    ],
  },
  {
    type: 'execution',
    // Waiting at its second step, so it holds still: only a cancel or an activation would move it.
    createInB: async (t, b) => {
      const flows = new FlowsClient(t, b);
      const flow = await flows.create([
        { type: 'callback', name: 'Start' },
        { type: 'callback', name: 'Wait' },
      ]);
      return (await flows.startWaiting(flow.id, 'Wait')).id;
    },
    snapshotAsB: async (t, b, id) =>
      (await t.http.get(`/api/executions/${id}`).set(bearer(b.operatorUser.token)).expect(200)).body,
    roles: ['operatorUser'],
    paths: [
      { action: 'read', method: 'get', path: (id) => `/api/executions/${id}` },
      { action: 'cancel', method: 'post', path: (id) => `/api/executions/${id}/cancel` },
    ],
  },
];

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
      for (const role of row.roles ?? A_ROLES) {
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

      const listPath = row.listPath;
      if (listPath) {
        it.each(row.roles ?? A_ROLES)("A's %s lists none of B's objects of this type", async (role) => {
          const ids = [await row.createInB(t, b), await row.createInB(t, b)];
          const listed = (await t.http.get(listPath).set(bearer(a[role].token)).expect(200)).body.items.map(
            (item: { id: string }) => item.id,
          );
          for (const id of ids) expect(listed).not.toContain(id);
          // B does see them, so the list is not merely empty for everyone.
          const listedByB = (await t.http.get(listPath).set(bearer(b.operatorUser.token)).expect(200)).body.items;
          expect(listedByB.map((item: { id: string }) => item.id)).toEqual(expect.arrayContaining(ids));
        });
      }
    });
  }

  it("A's operator cannot list or create triggers in B's application: 404, and B's list is unchanged", async () => {
    const path = `/api/applications/${b.application.id}/triggers`;
    const before = (await t.http.get(path).set(bearer(b.operatorUser.token)).expect(200)).body;
    const list = await t.http.get(path).set(bearer(a.operatorUser.token));
    const create = await t.http
      .post(path)
      .set(bearer(a.operatorUser.token))
      .send({ name: 'planted', cronExpression: '* * * * * *', runKey: 'b' });
    for (const response of [list, create]) {
      expect(response.status).toBe(404);
      expect(response.body).toEqual({ statusCode: 404, code: 'NOT_FOUND', message: expect.any(String) });
    }
    expect((await t.http.get(path).set(bearer(b.operatorUser.token)).expect(200)).body).toEqual(before);
  });

  it("a trigger of A cannot be routed to B's backend by backendId: VALIDATION_FAILED naming backendId", async () => {
    const theirs = (
      await t.http
        .post('/api/machine/register-backend')
        .set(bearer(b.backendUser.token))
        .send({ name: `b-${randomBytes(4).toString('hex')}`, callbackUrl: 'https://93.184.215.14/b' })
        .expect(201)
    ).body.id;
    const response = await t.http
      .post(`/api/applications/${a.application.id}/triggers`)
      .set(bearer(a.operatorUser.token))
      .send({ name: `t-${randomBytes(4).toString('hex')}`, cronExpression: '@daily', runKey: 'a', backendId: theirs })
      .expect(400);
    expect(response.body.errors).toEqual([{ field: 'backendId', message: expect.any(String) }]);
  });

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
  it("A's operator cannot list or create flows in B's application: 404, and B's list is unchanged", async () => {
    await new FlowsClient(t, b).create([{ type: 'callback', name: 'Start' }]);
    const path = `/api/applications/${b.application.id}/flows`;
    const before = (await t.http.get(path).set(bearer(b.operatorUser.token)).expect(200)).body;
    const list = await t.http.get(path).set(bearer(a.operatorUser.token));
    const create = await t.http
      .post(path)
      .set(bearer(a.operatorUser.token))
      .send({ name: 'planted', steps: [{ type: 'callback', name: 'Start' }] });
    for (const response of [list, create]) {
      expect(response.status).toBe(404);
      expect(response.body).toEqual({ statusCode: 404, code: 'NOT_FOUND', message: expect.any(String) });
    }
    expect((await t.http.get(path).set(bearer(b.operatorUser.token)).expect(200)).body).toEqual(before);
  });

  it("a trigger of A cannot start B's flow by flowId, nor a flow of A call B's backend: VALIDATION_FAILED", async () => {
    const theirFlow = await new FlowsClient(t, b).create([{ type: 'callback', name: 'Start' }]);
    const trigger = await t.http
      .post(`/api/applications/${a.application.id}/triggers`)
      .set(bearer(a.operatorUser.token))
      .send({
        name: `t-${randomBytes(4).toString('hex')}`,
        cronExpression: '@daily',
        runKey: 'a',
        flowId: theirFlow.id,
      })
      .expect(400);
    expect(trigger.body.errors).toEqual([{ field: 'flowId', message: expect.any(String) }]);

    const theirBackend = (
      await t.http
        .post('/api/machine/register-backend')
        .set(bearer(b.backendUser.token))
        .send({ name: `b-${randomBytes(4).toString('hex')}`, callbackUrl: 'https://93.184.215.14/b' })
        .expect(201)
    ).body.id;
    const flow = await t.http
      .post(`/api/applications/${a.application.id}/flows`)
      .set(bearer(a.operatorUser.token))
      .send({ name: 'calls b', steps: [{ type: 'webhook', name: 'Call', backendId: theirBackend }] })
      .expect(400);
    expect(flow.body.errors).toEqual([{ field: 'steps[0].backendId', message: expect.any(String) }]);
  });
});
