import { randomBytes, randomUUID } from 'node:crypto';
import { Clock } from '../src/common/clock.js';
import { startTestApp, type TestApp } from './support/app.js';
import { adminAuth, bearer, createMachineUser, type SeededTenant, seedTenant } from './support/fixtures.js';

// A public address literal: passes the SSRF guard without DNS; nothing fires in this file.
const CALLBACK = 'https://93.184.215.14/switchyard/cron';
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** The clock every nextRunAt below is computed from: a Friday, 12:15:30 in Berlin (CEST). */
const NOW = new Date('2026-05-01T10:15:30.000Z');

const uniqueName = () => `trigger-${randomBytes(4).toString('hex')}`;
const fields = (body: { errors?: { field: string }[] }) => [...new Set((body.errors ?? []).map((e) => e.field))];

/**
 * The operator's cron trigger API (SPEC §3 "Cron triggers"): shapes, defaults, validation, the
 * unique name, pagination, PATCH semantics and who may do what. The scheduler is off here (the
 * Clock is moved to a fixed instant so nextRunAt is known): firing is in cron-behaviour.
 */
describe('cron trigger API', () => {
  let t: TestApp;
  let a: SeededTenant;
  let b: SeededTenant;
  let clock: Clock;

  const triggersOf = (applicationId: string) => `/api/applications/${applicationId}/triggers`;
  const create = (body: object, token = a.operatorUser.token, applicationId = a.application.id) =>
    t.http.post(triggersOf(applicationId)).set(bearer(token)).send(body);
  const created = async (body: object = {}) =>
    (await create({ name: uniqueName(), cronExpression: '0 * * * *', runKey: 'hourly', ...body }).expect(201)).body;
  const patch = (id: string, body: object, token = a.operatorUser.token) =>
    t.http.patch(`/api/triggers/${id}`).set(bearer(token)).send(body);

  beforeAll(async () => {
    t = await startTestApp({ env: { SCHEDULER_ENABLED: 'false' } });
    [a, b] = [await seedTenant(t), await seedTenant(t)];
    clock = t.app.get(Clock);
  });
  // The Clock keeps running in real time after setTo; re-anchoring per test keeps NOW exact enough.
  beforeEach(() => clock.setTo(NOW));
  afterAll(() => t.close());

  describe('POST /api/applications/:applicationId/triggers', () => {
    it('creates a trigger with the SPEC fields and defaults, nextRunAt from the clock', async () => {
      const name = uniqueName();
      const response = await create({ name, cronExpression: '0 * * * *', runKey: 'payments.hourly' }).expect(201);
      expect(response.body).toEqual({
        id: expect.stringMatching(UUID),
        applicationId: a.application.id,
        name,
        cronExpression: '0 * * * *',
        timezone: 'UTC',
        runKey: 'payments.hourly',
        enabled: true,
        backendId: null,
        flowId: null,
        misfirePolicy: 'fire_once',
        nextRunAt: '2026-05-01T11:00:00.000Z',
        createdAt: expect.stringMatching(ISO),
        updatedAt: expect.stringMatching(ISO),
      });
      const read = await t.http.get(`/api/triggers/${response.body.id}`).set(bearer(a.operatorUser.token)).expect(200);
      expect(read.body).toEqual(response.body);
    });

    it('takes every optional field; nextRunAt follows the time zone; disabled means no nextRunAt', async () => {
      const backend = (
        await t.http
          .post('/api/machine/register-backend')
          .set(bearer(a.backendUser.token))
          .send({ name: uniqueName(), callbackUrl: CALLBACK })
          .expect(201)
      ).body;
      const berlin = await created({
        cronExpression: '0 9 * * *',
        timezone: 'Europe/Berlin',
        backendId: backend.id,
        misfirePolicy: 'fire_all',
      });
      // 12:15 in Berlin has passed 09:00 today: the next is tomorrow 09:00 CEST = 07:00 UTC.
      expect(berlin).toMatchObject({
        timezone: 'Europe/Berlin',
        backendId: backend.id,
        misfirePolicy: 'fire_all',
        nextRunAt: '2026-05-02T07:00:00.000Z',
      });
      expect(await created({ enabled: false, misfirePolicy: 'skip' })).toMatchObject({
        enabled: false,
        misfirePolicy: 'skip',
        nextRunAt: null,
      });
    });

    it.each([
      ['*/15 * * * *', '2026-05-01T10:30:00.000Z'],
      ['0 9 * * MON-FRI', '2026-05-04T09:00:00.000Z'],
      ['*/20 * * * * *', '2026-05-01T10:15:40.000Z'],
      ['0 0 12 * * *', '2026-05-01T12:00:00.000Z'],
      ['@hourly', '2026-05-01T11:00:00.000Z'],
      ['@daily', '2026-05-02T00:00:00.000Z'],
      ['@weekly', '2026-05-03T00:00:00.000Z'],
      ['@monthly', '2026-06-01T00:00:00.000Z'],
      ['@yearly', '2027-01-01T00:00:00.000Z'],
    ])('accepts %s (next run %s)', async (cronExpression, nextRunAt) => {
      expect(await created({ cronExpression })).toMatchObject({ cronExpression, nextRunAt });
    });

    it.each([
      ['seven fields', '0 0 0 1 1 * 2030', /got 7/],
      ['four fields', '* * * *', /got 4/],
      ['an out-of-range minute', '61 * * * *', /./],
      ['an unknown macro', '@reboot', /unknown macro/],
      ['a date that never comes', '0 0 30 2 *', /never fires/],
      ['words', 'every day at noon', /./],
      ['an empty expression', '', /./],
    ])('refuses %s with 400 INVALID_CRON', async (_case, cronExpression, message) => {
      const response = await create({ name: uniqueName(), cronExpression, runKey: 'k' }).expect(400);
      expect(response.body).toEqual({ statusCode: 400, code: 'INVALID_CRON', message: expect.stringMatching(message) });
    });

    it.each(['Mars/Olympus', 'Europe/Nowhere', 'CEST', '+02:00', 'utc/'])(
      'refuses the time zone "%s" with 400 INVALID_TIMEZONE and a message that says what is expected',
      async (timezone) => {
        const response = await create({ name: uniqueName(), cronExpression: '0 * * * *', runKey: 'k', timezone });
        expect(response.status).toBe(400);
        expect(response.body.code).toBe('INVALID_TIMEZONE');
        expect(response.body.message).toContain(`"${timezone}"`);
        expect(response.body.message).toMatch(/IANA.*Europe\/Berlin/);
      },
    );

    it.each(['Etc/GMT-5', 'America/New_York', 'Asia/Kolkata'])('accepts the time zone %s', async (timezone) => {
      expect(await created({ timezone })).toMatchObject({ timezone, nextRunAt: expect.stringMatching(ISO) });
    });

    it('accepts a runKey at the documented limits', async () => {
      expect(await created({ runKey: 'k'.repeat(100) })).toMatchObject({ runKey: 'k'.repeat(100) });
      expect(await created({ runKey: 'A-z_0.9:x' })).toMatchObject({ runKey: 'A-z_0.9:x' });
    });

    it.each([
      ['no body fields at all', {}, ['name', 'cronExpression', 'runKey']],
      ['a missing runKey', { name: 'x', cronExpression: '0 * * * *' }, ['runKey']],
      ['an empty runKey', { name: 'x', cronExpression: '0 * * * *', runKey: '' }, ['runKey']],
      ['a runKey with a space', { name: 'x', cronExpression: '0 * * * *', runKey: 'has space' }, ['runKey']],
      ['a 101-character runKey', { name: 'x', cronExpression: '0 * * * *', runKey: 'k'.repeat(101) }, ['runKey']],
      ['a numeric runKey', { name: 'x', cronExpression: '0 * * * *', runKey: 5 }, ['runKey']],
      ['an empty name', { name: '', cronExpression: '0 * * * *', runKey: 'k' }, ['name']],
      ['a 201-character name', { name: 'n'.repeat(201), cronExpression: '0 * * * *', runKey: 'k' }, ['name']],
      ['a numeric cronExpression', { name: 'x', cronExpression: 5, runKey: 'k' }, ['cronExpression']],
      ['a numeric timezone', { name: 'x', cronExpression: '0 * * * *', runKey: 'k', timezone: 1 }, ['timezone']],
      ['enabled as a string', { name: 'x', cronExpression: '0 * * * *', runKey: 'k', enabled: 'yes' }, ['enabled']],
      [
        'an unknown misfirePolicy',
        { name: 'x', cronExpression: '0 * * * *', runKey: 'k', misfirePolicy: 'catch_up' },
        ['misfirePolicy'],
      ],
      [
        'a backendId that is no UUID',
        { name: 'x', cronExpression: '0 * * * *', runKey: 'k', backendId: 'b' },
        ['backendId'],
      ],
      ['an unknown field', { name: 'x', cronExpression: '0 * * * *', runKey: 'k', retries: 3 }, ['retries']],
      ['a server-assigned id', { name: 'x', cronExpression: '0 * * * *', runKey: 'k', id: randomUUID() }, ['id']],
      [
        'a server-assigned nextRunAt',
        { name: 'x', cronExpression: '0 * * * *', runKey: 'k', nextRunAt: '2030-01-01T00:00:00.000Z' },
        ['nextRunAt'],
      ],
      ['a body that is an array', [], ['body']],
    ])('refuses %s with VALIDATION_FAILED naming the fields', async (_case, body, expected) => {
      const response = await create(body).expect(400);
      expect(response.body.code).toBe('VALIDATION_FAILED');
      expect(fields(response.body)).toEqual(expected);
    });

    it("refuses another tenant's backendId, or an unknown one, as VALIDATION_FAILED naming backendId", async () => {
      const theirs = (
        await t.http
          .post('/api/machine/register-backend')
          .set(bearer(b.backendUser.token))
          .send({ name: uniqueName(), callbackUrl: CALLBACK })
          .expect(201)
      ).body;
      for (const backendId of [theirs.id, randomUUID()]) {
        const response = await create({ name: uniqueName(), cronExpression: '0 * * * *', runKey: 'k', backendId });
        expect(response.status).toBe(400);
        expect(response.body.code).toBe('VALIDATION_FAILED');
        expect(fields(response.body)).toEqual(['backendId']);
      }
    });

    it('refuses a flowId that names no flow, and backendId with flowId together', async () => {
      const unknownFlow = await create({
        name: uniqueName(),
        cronExpression: '0 * * * *',
        runKey: 'k',
        flowId: randomUUID(),
      });
      expect(unknownFlow.status).toBe(400);
      expect(unknownFlow.body.code).toBe('VALIDATION_FAILED');
      expect(fields(unknownFlow.body)).toEqual(['flowId']);

      const backend = (
        await t.http
          .post('/api/machine/register-backend')
          .set(bearer(a.backendUser.token))
          .send({ name: uniqueName(), callbackUrl: CALLBACK })
          .expect(201)
      ).body;
      const both = await create({
        name: uniqueName(),
        cronExpression: '0 * * * *',
        runKey: 'k',
        backendId: backend.id,
        flowId: randomUUID(),
      });
      expect(both.status).toBe(400);
      expect(both.body.code).toBe('VALIDATION_FAILED');
      expect(both.body.message).toMatch(/backendId or flowId/);
    });

    it('a name is unique per application (409 CONFLICT), not across applications', async () => {
      const first = await created();
      const clash = await create({ name: first.name, cronExpression: '@daily', runKey: 'other' });
      expect(clash.status).toBe(409);
      expect(clash.body).toEqual({ statusCode: 409, code: 'CONFLICT', message: expect.any(String) });

      const other = (
        await t.http
          .post(`/api/projects/${a.project.id}/applications`)
          .set(adminAuth)
          .send({ name: 'Other application', slug: `other-${randomBytes(3).toString('hex')}` })
          .expect(201)
      ).body;
      const elsewhere = await create(
        { name: first.name, cronExpression: '0 * * * *', runKey: 'hourly' },
        a.operatorUser.token,
        other.id,
      ).expect(201);
      expect(elsewhere.body.applicationId).toBe(other.id);
    });

    it('answers 404 for an application of another tenant, an unknown one, or a path id that is no UUID', async () => {
      for (const applicationId of [b.application.id, randomUUID(), 'not-a-uuid']) {
        const body = { name: uniqueName(), cronExpression: '0 * * * *', runKey: 'k' };
        const response = await create(body, a.operatorUser.token, applicationId);
        expect(response.status).toBe(404);
        expect(response.body.code).toBe('NOT_FOUND');
        const list = await t.http.get(triggersOf(applicationId)).set(bearer(a.operatorUser.token));
        expect(list.status).toBe(404);
      }
    });
  });

  describe('GET /api/applications/:applicationId/triggers', () => {
    it('pages newest first with limit, cursor and includeTotal', async () => {
      const application = (
        await t.http
          .post(`/api/projects/${a.project.id}/applications`)
          .set(adminAuth)
          .send({ name: 'Paged', slug: `paged-${randomBytes(3).toString('hex')}` })
          .expect(201)
      ).body;
      const ids: string[] = [];
      for (let index = 0; index < 5; index++) {
        // A few milliseconds apart: rows created in the same millisecond are ordered by id instead.
        await new Promise((resolve) => setTimeout(resolve, 5));
        const body = { name: `paged-${index}`, cronExpression: '@daily', runKey: 'k' };
        ids.push((await create(body, a.operatorUser.token, application.id).expect(201)).body.id);
      }
      const list = (query: string) =>
        t.http
          .get(`${triggersOf(application.id)}?${query}`)
          .set(bearer(a.operatorUser.token))
          .expect(200);

      const first = await list('limit=2&includeTotal=true');
      expect(first.body.items.map((item: { id: string }) => item.id)).toEqual([ids[4], ids[3]]);
      expect(first.body.total).toBe(5);
      const second = await list(`limit=2&cursor=${first.body.nextCursor}`);
      expect(second.body.items.map((item: { id: string }) => item.id)).toEqual([ids[2], ids[1]]);
      expect(second.body).not.toHaveProperty('total');
      const third = await list(`limit=2&cursor=${second.body.nextCursor}`);
      expect(third.body.items.map((item: { id: string }) => item.id)).toEqual([ids[0]]);
      expect(third.body.nextCursor).toBeNull();
      // Items have the same shape as GET /api/triggers/:id.
      const one = await t.http.get(`/api/triggers/${ids[0]}`).set(bearer(a.operatorUser.token)).expect(200);
      expect(third.body.items[0]).toEqual(one.body);
    });

    it.each([
      ['limit=0', 'limit'],
      ['limit=201', 'limit'],
      ['cursor=garbage', 'cursor'],
      ['includeTotal=maybe', 'includeTotal'],
      ['enabled=true', 'enabled'],
    ])('refuses ?%s with VALIDATION_FAILED naming %s', async (query, field) => {
      const response = await t.http
        .get(`${triggersOf(a.application.id)}?${query}`)
        .set(bearer(a.operatorUser.token))
        .expect(400);
      expect(response.body.code).toBe('VALIDATION_FAILED');
      expect(fields(response.body)).toContain(field);
    });
  });

  describe('PATCH /api/triggers/:id', () => {
    it('changes fields and answers 200 with the whole trigger; a new expression or zone recomputes nextRunAt', async () => {
      const trigger = await created({ cronExpression: '0 * * * *' });
      expect(trigger.nextRunAt).toBe('2026-05-01T11:00:00.000Z');

      const renamed = await patch(trigger.id, { name: 'renamed', runKey: 'new.key', misfirePolicy: 'skip' }).expect(
        200,
      );
      expect(renamed.body).toEqual({
        ...trigger,
        name: 'renamed',
        runKey: 'new.key',
        misfirePolicy: 'skip',
        updatedAt: expect.stringMatching(ISO),
      });

      clock.setTo(new Date('2026-05-01T11:20:00.000Z'));
      const minutely = await patch(trigger.id, { cronExpression: '*/5 * * * *' }).expect(200);
      expect(minutely.body.nextRunAt).toBe('2026-05-01T11:25:00.000Z');

      const zoned = await patch(trigger.id, { cronExpression: '0 9 * * *', timezone: 'America/New_York' }).expect(200);
      // 07:20 in New York (EDT): 09:00 EDT today is 13:00 UTC.
      expect(zoned.body).toMatchObject({ timezone: 'America/New_York', nextRunAt: '2026-05-01T13:00:00.000Z' });
      const read = await t.http.get(`/api/triggers/${trigger.id}`).set(bearer(a.operatorUser.token)).expect(200);
      expect(read.body).toEqual(zoned.body);
    });

    it('disabling clears nextRunAt; re-enabling computes it from now', async () => {
      const trigger = await created({ cronExpression: '*/10 * * * *' });
      expect((await patch(trigger.id, { enabled: false }).expect(200)).body).toMatchObject({
        enabled: false,
        nextRunAt: null,
      });
      clock.setTo(new Date('2026-05-03T08:01:00.000Z'));
      expect((await patch(trigger.id, { enabled: true }).expect(200)).body).toMatchObject({
        enabled: true,
        nextRunAt: '2026-05-03T08:10:00.000Z',
      });
    });

    it('routes by backendId and back to runKey (null clears backendId)', async () => {
      const backend = (
        await t.http
          .post('/api/machine/register-backend')
          .set(bearer(a.backendUser.token))
          .send({ name: uniqueName(), callbackUrl: CALLBACK })
          .expect(201)
      ).body;
      const trigger = await created();
      expect((await patch(trigger.id, { backendId: backend.id }).expect(200)).body.backendId).toBe(backend.id);
      expect((await patch(trigger.id, { backendId: null }).expect(200)).body.backendId).toBeNull();
      const foreign = await patch(trigger.id, { backendId: randomUUID() }).expect(400);
      expect(fields(foreign.body)).toEqual(['backendId']);
    });

    it.each(['name', 'cronExpression', 'timezone', 'runKey', 'enabled', 'misfirePolicy'])(
      'refuses null for the non-nullable %s with VALIDATION_FAILED naming it',
      async (field) => {
        const trigger = await created();
        const response = await patch(trigger.id, { [field]: null }).expect(400);
        expect(response.body.code).toBe('VALIDATION_FAILED');
        expect(fields(response.body)).toEqual([field]);
      },
    );

    it('refuses a bad expression, zone, unknown field or server-assigned field, and changes nothing', async () => {
      const trigger = await created();
      const cases: [object, string][] = [
        [{ cronExpression: '* * * * * * *' }, 'INVALID_CRON'],
        [{ timezone: 'Nowhere/Land' }, 'INVALID_TIMEZONE'],
        [{ nextRunAt: null }, 'VALIDATION_FAILED'],
        [{ applicationId: b.application.id }, 'VALIDATION_FAILED'],
        [{ color: 'red' }, 'VALIDATION_FAILED'],
      ];
      for (const [body, code] of cases) {
        const response = await patch(trigger.id, body);
        expect(response.status).toBe(400);
        expect(response.body.code).toBe(code);
      }
      const read = await t.http.get(`/api/triggers/${trigger.id}`).set(bearer(a.operatorUser.token)).expect(200);
      expect(read.body).toEqual(trigger);
    });

    it('renaming onto a taken name is 409 CONFLICT', async () => {
      const [first, second] = [await created(), await created()];
      const response = await patch(second.id, { name: first.name });
      expect(response.status).toBe(409);
      expect(response.body.code).toBe('CONFLICT');
    });
  });

  describe('DELETE /api/triggers/:id', () => {
    it('answers 204, then every route of the trigger answers 404', async () => {
      const trigger = await created();
      const token = a.operatorUser.token;
      await t.http.delete(`/api/triggers/${trigger.id}`).set(bearer(token)).expect(204);
      for (const response of [
        await t.http.get(`/api/triggers/${trigger.id}`).set(bearer(token)),
        await patch(trigger.id, { name: 'back' }),
        await t.http.delete(`/api/triggers/${trigger.id}`).set(bearer(token)),
        await t.http.post(`/api/triggers/${trigger.id}/run`).set(bearer(token)),
        await t.http.get(`/api/triggers/${trigger.id}/runs`).set(bearer(token)),
      ]) {
        expect(response.status).toBe(404);
        expect(response.body).toEqual({ statusCode: 404, code: 'NOT_FOUND', message: expect.any(String) });
      }
    });

    it('answers 404 for an unknown id or one that is no UUID', async () => {
      for (const id of [randomUUID(), 'not-a-uuid']) {
        const response = await t.http.get(`/api/triggers/${id}`).set(bearer(a.operatorUser.token));
        expect(response.status).toBe(404);
      }
    });
  });

  describe('who may manage triggers', () => {
    const routes = (applicationId: string, triggerId: string) => [
      {
        method: 'post' as const,
        path: triggersOf(applicationId),
        body: { name: 'x', cronExpression: '@daily', runKey: 'k' },
      },
      { method: 'get' as const, path: triggersOf(applicationId) },
      { method: 'get' as const, path: `/api/triggers/${triggerId}` },
      { method: 'patch' as const, path: `/api/triggers/${triggerId}`, body: { name: 'taken-over' } },
      { method: 'delete' as const, path: `/api/triggers/${triggerId}` },
      { method: 'post' as const, path: `/api/triggers/${triggerId}/run` },
      { method: 'get' as const, path: `/api/triggers/${triggerId}/runs` },
    ];

    it.each([
      ['a backend-only machine user', 'backend', 403, 'FORBIDDEN'],
      ['the admin token', 'admin', 403, 'FORBIDDEN'],
      ['no credentials', 'none', 401, 'UNAUTHENTICATED'],
      ['an unknown token', 'garbage', 401, 'UNAUTHENTICATED'],
    ])('%s gets %i on every route, and nothing changes', async (_case, who, status, code) => {
      const trigger = await created();
      const headers: Record<string, Record<string, string>> = {
        backend: bearer(a.backendUser.token),
        admin: adminAuth,
        none: {},
        garbage: bearer('sy_not-a-real-token'),
      };
      for (const route of routes(a.application.id, trigger.id)) {
        const request = t.http[route.method](route.path).set(headers[who]);
        const response = await (route.body ? request.send(route.body) : request);
        expect({ route: `${route.method} ${route.path}`, status: response.status }).toEqual({
          route: `${route.method} ${route.path}`,
          status,
        });
        expect(response.body.code).toBe(code);
      }
      const read = await t.http.get(`/api/triggers/${trigger.id}`).set(bearer(a.operatorUser.token)).expect(200);
      expect(read.body).toEqual(trigger);
      const runs = await t.http.get(`/api/triggers/${trigger.id}/runs`).set(bearer(a.operatorUser.token));
      expect(runs.body.items).toEqual([]);
    });

    it('a machine user holding operator among other roles may manage them', async () => {
      const both = await createMachineUser(t, a.tenant.id, ['backend', 'operator', 'billing']);
      const response = await create({ name: uniqueName(), cronExpression: '@daily', runKey: 'k' }, both.token);
      expect(response.status).toBe(201);
    });

    it("another tenant's operator gets 404 on every route of this tenant's trigger and application", async () => {
      const trigger = await created();
      for (const route of routes(a.application.id, trigger.id)) {
        const request = t.http[route.method](route.path).set(bearer(b.operatorUser.token));
        const response = await (route.body ? request.send(route.body) : request);
        expect({ route: `${route.method} ${route.path}`, status: response.status }).toEqual({
          route: `${route.method} ${route.path}`,
          status: 404,
        });
        expect(response.body.code).toBe('NOT_FOUND');
      }
      const read = await t.http.get(`/api/triggers/${trigger.id}`).set(bearer(a.operatorUser.token)).expect(200);
      expect(read.body).toEqual(trigger);
    });
  });
});
