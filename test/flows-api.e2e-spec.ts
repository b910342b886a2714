import { randomUUID } from 'node:crypto';
import { Webhook } from 'standardwebhooks';
import { Clock } from '../src/common/clock.js';
import { FlowWorker } from '../src/flows/flow-worker.js';
import { startTestApp, type TestApp } from './support/app.js';
import { adminAuth, bearer, seedTenant, type SeededTenant, uniqueSlug } from './support/fixtures.js';
import {
  activationPath,
  type ExecutionBody,
  type FlowBody,
  FlowsClient,
  type HistoryEntry,
  uniqueName,
} from './support/flows.js';
import { eventually, type ReceivedRequest, TestReceiver } from './support/receiver.js';

/**
 * The operator API of flows (SPEC §3 "Flows and executions"): definitions and their validation,
 * versions, the executions API, timers (driven by moving the Clock and waking the FlowWorker),
 * cancel, webhook steps (templates, headers, signing, failure) and cron triggers that start flows.
 */

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const MINUTE = 60_000;

describe('flows API', () => {
  let t: TestApp;
  let receiver: TestReceiver;
  let seed: SeededTenant;
  let other: SeededTenant;
  let flows: FlowsClient;
  let operator: { authorization: string };
  let backend: { id: string; signingSecret: string };

  beforeAll(async () => {
    receiver = await TestReceiver.start();
    // `/fail` answers 500 so webhook steps there die after the two quick attempts of the schedule.
    receiver.respond = (request) =>
      request.path.startsWith('/fail')
        ? { status: 500, body: '{"status":"error"}' }
        : { status: 200, body: JSON.stringify({ status: 'success', path: request.path }) };
    t = await startTestApp({
      env: {
        ALLOW_HTTP_CALLBACKS: 'true',
        CALLBACK_ALLOWED_HOSTS: '127.0.0.1',
        DELIVERY_POLL_MS: '50',
        SCHEDULER_TICK_MS: '50',
        DELIVERY_RETRY_SCHEDULE: '0,100ms',
      },
    });
    seed = await seedTenant(t);
    other = await seedTenant(t);
    flows = new FlowsClient(t, seed);
    operator = flows.operator;
    backend = (
      await t.http
        .post('/api/machine/register-backend')
        .set(bearer(seed.backendUser.token))
        .send({ name: 'orders', callbackUrl: receiver.url('/backend') })
        .expect(201)
    ).body;
  });
  afterAll(async () => {
    await t.close();
    await receiver.close();
  });

  function createFlow(body: object, agent = t.http, headers: Record<string, string> = operator) {
    return agent.post(`/api/applications/${seed.application.id}/flows`).set(headers).send(body);
  }

  /** The request a webhook step of this execution made (steps here send `x-execution: {{ .run.id }}`). */
  function requestOf(executionId: string): Promise<ReceivedRequest> {
    return eventually(async () => receiver.requests.find((request) => request.headers['x-execution'] === executionId));
  }

  const withExecutionHeader = { headers: { 'x-execution': '{{ .run.id }}' } };

  async function passTime(ms: number): Promise<void> {
    t.app.get(Clock).advance(ms);
    await t.app.get(FlowWorker).wake();
  }

  const types = (history: HistoryEntry[]) => history.map((event) => event.type);
  /** Finished steps' names. Sorted: the context is jsonb, which keeps no key order. */
  const stepNames = (execution: ExecutionBody) => Object.keys(execution.context.steps).sort();

  describe('flow definitions', () => {
    it('POST answers 201 version 1; callback steps carry a triggerId and an absolute activationUrl', async () => {
      const response = await createFlow({
        name: 'Orders v1',
        steps: [
          { type: 'callback', name: 'Order placed' },
          { type: 'delay', name: 'Settle', duration: 'PT1M' },
          { type: 'webhook', name: 'Notify', backendId: backend.id },
          { type: 'callback', name: 'Paid', timeout: 'PT24H', onTimeout: 'continue' },
        ],
      }).expect(201);
      const flow: FlowBody = response.body;

      expect(Object.keys(flow).sort()).toEqual(
        ['applicationId', 'createdAt', 'id', 'name', 'steps', 'updatedAt', 'version'].sort(),
      );
      expect(flow).toMatchObject({ applicationId: seed.application.id, name: 'Orders v1', version: 1 });
      expect(flow.createdAt).toMatch(ISO);
      for (const name of ['Order placed', 'Paid']) {
        const step = flow.steps.find((candidate) => candidate.name === name)!;
        expect(step.triggerId).toMatch(UUID);
        // Built from the Host the request came in on (supertest talks to 127.0.0.1:<port>).
        expect(step.activationUrl).toMatch(
          new RegExp(`^http://127\\.0\\.0\\.1:\\d+/api/automation/flow/${flow.id}/trigger/${step.triggerId}/activate$`),
        );
      }
      expect(flow.steps[0].triggerId).not.toBe(flow.steps[3].triggerId);
      expect(flow.steps[1]).toEqual({ type: 'delay', name: 'Settle', duration: 'PT1M' });
      expect(flow.steps[2]).toEqual({ type: 'webhook', name: 'Notify', backendId: backend.id });
      expect(flow.steps[3]).toMatchObject({ timeout: 'PT24H', onTimeout: 'continue' });

      expect((await t.http.get(`/api/flows/${flow.id}`).set(operator).expect(200)).body).toEqual(flow);
    });

    it('X-Forwarded-Proto/-Host are not trusted without TRUST_PROXY', async () => {
      const response = await createFlow({ name: uniqueName(), steps: [{ type: 'callback', name: 'Go' }] })
        .set('x-forwarded-proto', 'https')
        .set('x-forwarded-host', 'gateway.example.com')
        .expect(201);
      expect(response.body.steps[0].activationUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/api\/automation\/flow\//);
    });

    describe('on other replicas of the same database', () => {
      let proxied: TestApp;
      let configured: TestApp;

      beforeAll(async () => {
        // Same database, no workers: these replicas only answer the API.
        const quiet = { SCHEDULER_ENABLED: 'false', DELIVERY_WORKER_ENABLED: 'false' };
        proxied = await startTestApp({ database: t.database, env: { ...quiet, TRUST_PROXY: 'true' } });
        configured = await startTestApp({
          database: t.database,
          env: { ...quiet, PUBLIC_BASE_URL: 'https://switchyard.example.com' },
        });
      });
      afterAll(async () => {
        await proxied.close();
        await configured.close();
      });

      it('with TRUST_PROXY=true, X-Forwarded-Proto/-Host make the base of activation URLs', async () => {
        const response = await createFlow(
          { name: uniqueName(), steps: [{ type: 'callback', name: 'Go' }] },
          proxied.http,
        )
          .set('x-forwarded-proto', 'https')
          .set('x-forwarded-host', 'gateway.example.com')
          .expect(201);
        const flow: FlowBody = response.body;
        expect(flow.steps[0].activationUrl).toBe(
          `https://gateway.example.com/api/automation/flow/${flow.id}/trigger/${flow.steps[0].triggerId}/activate`,
        );
      });

      it('PUBLIC_BASE_URL wins over the request, in activation URLs and in executions’ callbacks', async () => {
        const created = await createFlow(
          {
            name: uniqueName(),
            steps: [
              { type: 'callback', name: 'Go' },
              { type: 'callback', name: 'Later' },
            ],
          },
          configured.http,
        )
          .set('x-forwarded-host', 'gateway.example.com')
          .expect(201);
        const flow: FlowBody = created.body;
        const base = `https://switchyard.example.com/api/automation/flow/${flow.id}/trigger`;
        expect(flow.steps.map((step) => step.activationUrl)).toEqual([
          `${base}/${flow.steps[0].triggerId}/activate`,
          `${base}/${flow.steps[1].triggerId}/activate`,
        ]);

        const execution: ExecutionBody = (
          await configured.http.post(`/api/flows/${flow.id}/executions`).set(operator).send({}).expect(201)
        ).body;
        expect(execution.context.callbacks).toEqual({
          Go: `${base}/${flow.steps[0].triggerId}/activate?execution=${execution.id}`,
          Later: `${base}/${flow.steps[1].triggerId}/activate?execution=${execution.id}`,
        });
      });

      it('a webhook step to an http:// URL is CALLBACK_URL_FORBIDDEN unless ALLOW_HTTP_CALLBACKS', async () => {
        const response = await createFlow(
          {
            name: uniqueName(),
            steps: [{ type: 'webhook', name: 'Notify', invocationMethod: { url: 'http://93.184.215.14/hook' } }],
          },
          configured.http,
        );
        expect(response.status).toBe(400);
        expect(response.body.code).toBe('CALLBACK_URL_FORBIDDEN');
      });
    });

    const callback = (name: string, extra: object = {}) => ({ type: 'callback', name, ...extra });
    const url = (value: string) => ({ type: 'webhook', name: 'Notify', invocationMethod: { url: value } });

    it.each([
      ['no steps', [], 'steps'],
      ['101 steps', Array.from({ length: 101 }, (_, i) => callback(`Step ${i}`)), 'steps'],
      [
        'an unknown field deep inside a step',
        [callback('A', { auth: { type: 'NONE', extra: 1 } })],
        'steps[0].auth.extra',
      ],
      [
        'an unknown field in invocationMethod',
        [callback('A'), { type: 'webhook', name: 'B', invocationMethod: { url: 'https://93.184.215.14', x: 1 } }],
        'steps[1].invocationMethod.x',
      ],
      ['a server-assigned triggerId', [callback('A', { triggerId: randomUUID() })], 'steps[0].triggerId'],
      ['a duplicate step name', [callback('Same'), { type: 'delay', name: 'Same', duration: 'PT1S' }], 'steps[1].name'],
      ['an empty step name', [callback('')], 'steps[0].name'],
      ['a step name of 201 characters', [callback('n'.repeat(201))], 'steps[0].name'],
      ['a step without a name', [{ type: 'callback' }], 'steps[0].name'],
      ['an unknown step type', [{ type: 'email', name: 'Mail' }], 'steps[0].type'],
      ['a bad onFail', [callback('A', { auth: { type: 'MACHINE_USER', onFail: 'PANIC' } })], 'steps[0].auth.onFail'],
      ['a webhook step without backendId or url', [{ type: 'webhook', name: 'Notify' }], 'steps[0].backendId'],
      ['a backendId that is not a UUID', [{ type: 'webhook', name: 'N', backendId: 'b-1' }], 'steps[0].backendId'],
      [
        'an unknown backendId',
        [callback('A'), { type: 'webhook', name: 'N', backendId: randomUUID() }],
        'steps[1].backendId',
      ],
      [
        'a url over 2,048 characters',
        [url(`https://93.184.215.14/${'a'.repeat(2048)}`)],
        'steps[0].invocationMethod.url',
      ],
    ])('%s is 400 VALIDATION_FAILED naming %s', async (_, steps, field) => {
      const response = await createFlow({ name: uniqueName(), steps }).expect(400);
      expect(response.body).toMatchObject({ statusCode: 400, code: 'VALIDATION_FAILED' });
      expect(response.body.errors).toEqual(expect.arrayContaining([{ field, message: expect.any(String) }]));
    });

    it("a backendId of another tenant's backend is VALIDATION_FAILED naming steps[i].backendId", async () => {
      const theirs = (
        await t.http
          .post('/api/machine/register-backend')
          .set(bearer(other.backendUser.token))
          .send({ name: uniqueSlug('b'), callbackUrl: 'https://93.184.215.14/b' })
          .expect(201)
      ).body.id;
      const response = await createFlow({
        name: uniqueName(),
        steps: [
          callback('A'),
          { type: 'delay', name: 'Wait', duration: 'PT0S' },
          { type: 'webhook', name: 'N', backendId: theirs },
        ],
      }).expect(400);
      expect(response.body.errors).toEqual([{ field: 'steps[2].backendId', message: expect.any(String) }]);
    });

    it('unknown top-level fields and a bad flow name are VALIDATION_FAILED', async () => {
      const extra = await createFlow({ name: uniqueName(), steps: [callback('A')], version: 3 }).expect(400);
      expect(extra.body.errors).toEqual([{ field: 'version', message: expect.any(String) }]);
      const unnamed = await createFlow({ name: '', steps: [callback('A')] }).expect(400);
      expect(unnamed.body.errors).toEqual([{ field: 'name', message: expect.any(String) }]);
    });

    it.each([
      ['a delay that is not an ISO-8601 duration', { type: 'delay', name: 'Cool down', duration: '10 minutes' }],
      ['a delay in months (calendar-dependent)', { type: 'delay', name: 'Cool down', duration: 'P1M' }],
      ['a callback timeout that is not a duration', callback('Cool down', { timeout: 'PT' })],
    ])('%s is 400 INVALID_DURATION naming the step', async (_, step) => {
      const response = await createFlow({ name: uniqueName(), steps: [callback('Start'), step] }).expect(400);
      expect(response.body).toMatchObject({ code: 'INVALID_DURATION' });
      expect(response.body.message).toContain('Cool down');
    });

    it.each([
      [
        'a condition',
        callback('Check it', { condition: { type: 'JQ', expressions: ['.data.status == "ok"', '.data |'] } }),
      ],
      [
        'a body template',
        {
          type: 'webhook',
          name: 'Check it',
          invocationMethod: { url: 'https://93.184.215.14', body: { a: ['{{ .x | }}'] } },
        },
      ],
      [
        'a header template',
        {
          type: 'webhook',
          name: 'Check it',
          invocationMethod: { url: 'https://93.184.215.14', headers: { 'x-a': 'id {{ .run | }}' } },
        },
      ],
      [
        'a url template',
        { type: 'webhook', name: 'Check it', invocationMethod: { url: 'https://93.184.215.14/{{ [ }}' } },
      ],
    ])('a jq syntax error in %s is 400 INVALID_EXPRESSION naming the step', async (_, step) => {
      const response = await createFlow({ name: uniqueName(), steps: [callback('Start'), step] }).expect(400);
      expect(response.body).toMatchObject({ code: 'INVALID_EXPRESSION' });
      expect(response.body.message).toContain('Check it');
    });

    it('a JSON Schema that is not one is 400 INVALID_SCHEMA naming the step', async () => {
      const response = await createFlow({
        name: uniqueName(),
        steps: [callback('Start'), callback('Check it', { schema: { type: 'strnig' } })],
      }).expect(400);
      expect(response.body).toMatchObject({ code: 'INVALID_SCHEMA' });
      expect(response.body.message).toContain('Check it');
    });

    it.each([
      ['unparseable', 'not a url', 'INVALID_URL'],
      ['a scheme other than https/http', 'ftp://example.com/hook', 'CALLBACK_URL_FORBIDDEN'],
      ['a private address', 'https://10.1.2.3/hook', 'CALLBACK_URL_FORBIDDEN'],
      ['a metadata address', 'http://169.254.169.254/latest', 'CALLBACK_URL_FORBIDDEN'],
    ])('a webhook url that is %s is 400 %s', async (_, value, code) => {
      const response = await createFlow({ name: uniqueName(), steps: [url(value)] }).expect(400);
      expect(response.body).toMatchObject({ statusCode: 400, code });
    });

    it('a flow name taken in the application is 409 CONFLICT, on POST and on PUT', async () => {
      const name = uniqueName();
      await createFlow({ name, steps: [callback('A')] }).expect(201);
      const conflict = await createFlow({ name, steps: [callback('A')] }).expect(409);
      expect(conflict.body).toMatchObject({ statusCode: 409, code: 'CONFLICT' });

      const second = await flows.create([callback('A')]);
      const renamed = await t.http
        .put(`/api/flows/${second.id}`)
        .set(operator)
        .send({ name, steps: [callback('A')] });
      expect(renamed.status).toBe(409);
      expect((await t.http.get(`/api/flows/${second.id}`).set(operator).expect(200)).body.version).toBe(1);
    });

    it('PUT answers 200 with version 2: unchanged callback steps keep their triggerId, renamed ones get new ones', async () => {
      const v1 = await flows.create([callback('Start'), callback('Approve'), callback('Ship')]);

      const response = await t.http
        .put(`/api/flows/${v1.id}`)
        .set(operator)
        .send({
          name: `${v1.name} renamed`,
          steps: [
            callback('Start', { timeout: 'PT1H' }),
            callback('Approval'),
            { type: 'delay', name: 'Ship', duration: 'PT1S' },
          ],
        })
        .expect(200);
      const v2: FlowBody = response.body;

      expect(v2).toMatchObject({ id: v1.id, name: `${v1.name} renamed`, version: 2, createdAt: v1.createdAt });
      // Same name and type: the same trigger and URL, even though its settings changed.
      expect(v2.steps[0].triggerId).toBe(v1.steps[0].triggerId);
      // (Each supertest request reaches the server on a new port, so compare the paths.)
      expect(new URL(v2.steps[0].activationUrl!).pathname).toBe(new URL(v1.steps[0].activationUrl!).pathname);
      expect(v2.steps[1].triggerId).toMatch(UUID);
      expect([v1.steps[1].triggerId, v1.steps[2].triggerId]).not.toContain(v2.steps[1].triggerId);
      expect(v2.steps[2]).toEqual({ type: 'delay', name: 'Ship', duration: 'PT1S' });
      expect((await t.http.get(`/api/flows/${v1.id}`).set(operator).expect(200)).body).toEqual(v2);

      const v3: FlowBody = (
        await t.http
          .put(`/api/flows/${v1.id}`)
          .set(operator)
          .send({ name: v2.name, steps: [callback('Start'), callback('Approval')] })
          .expect(200)
      ).body;
      expect(v3.version).toBe(3);
      expect(v3.steps.map((step) => step.triggerId)).toEqual(v2.steps.slice(0, 2).map((step) => step.triggerId));
    });

    it('a PUT that fails validation leaves the current version as it was', async () => {
      const flow = await flows.create([callback('Start')]);
      await t.http
        .put(`/api/flows/${flow.id}`)
        .set(operator)
        .send({ name: flow.name, steps: [callback('Start'), { type: 'delay', name: 'X', duration: 'soon' }] })
        .expect(400);
      expect((await t.http.get(`/api/flows/${flow.id}`).set(operator).expect(200)).body).toEqual(flow);
    });

    /** PUT a new version of the flow under the same name; its body. */
    const newVersion = async (flow: FlowBody, steps: object[]): Promise<FlowBody> =>
      (await t.http.put(`/api/flows/${flow.id}`).set(operator).send({ name: flow.name, steps }).expect(200)).body;

    it('executions started on v1 finish on v1 after a PUT (version pinning)', async () => {
      const v1 = await flows.create([
        callback('Start'),
        callback('Approve'),
        { type: 'delay', name: 'Only in v1', duration: 'PT0S' },
      ]);
      const pinned = await flows.startWaiting(v1.id, 'Approve');
      const v2 = await newVersion(v1, [
        callback('Start'),
        callback('Approve'),
        { type: 'delay', name: 'Only in v2', duration: 'PT0S' },
      ]);
      expect(v2.steps[1].triggerId).toBe(v1.steps[1].triggerId);

      await t.http
        .post(`${activationPath(v2, 'Approve')}?execution=${pinned.id}`)
        .send({})
        .expect(200);
      const done = await flows.until(pinned.id, (e) => e.status === 'completed');
      expect(done.flowVersion).toBe(1);
      expect(stepNames(done)).toEqual(['Start', 'Approve', 'Only in v1'].sort());

      const fresh = await flows.startWaiting(v1.id, 'Approve');
      expect(fresh.flowVersion).toBe(2);
      await t.http
        .post(`${activationPath(v2, 'Approve')}?execution=${fresh.id}`)
        .send({})
        .expect(200);
      const freshDone = await flows.until(fresh.id, (e) => e.status === 'completed');
      expect(stepNames(freshDone)).toEqual(['Start', 'Approve', 'Only in v2'].sort());
    });

    it('a kept callback step is gated by its current definition, also for executions pinned to v1', async () => {
      const v1 = await flows.create([
        callback('Start'),
        callback('Approve'),
        { type: 'delay', name: 'Only in v1', duration: 'PT0S' },
      ]);
      const pinned = await flows.startWaiting(v1.id, 'Approve');
      const v2 = await newVersion(v1, [
        callback('Start'),
        callback('Approve', {
          schema: { type: 'object', required: ['approved'], properties: { approved: { type: 'boolean' } } },
          condition: { type: 'JQ', expressions: ['.data.approved'], combinator: 'and' },
        }),
      ]);
      const path = `${activationPath(v2, 'Approve')}?execution=${pinned.id}`;

      const invalid = await t.http.post(path).send({});
      expect(invalid.status).toBe(400);
      expect(invalid.body.code).toBe('INVALID_PAYLOAD');
      const refused = await t.http.post(path).send({ approved: false }).expect(200);
      expect(refused.headers['x-activation']).toBe('ignored');
      expect((await flows.get(pinned.id)).status).toBe('waiting');

      await t.http.post(path).send({ approved: true }).expect(200);
      // The gate is v2's; what follows the step is still v1's.
      const done = await flows.until(pinned.id, (e) => e.status === 'completed');
      expect(done.flowVersion).toBe(1);
      expect(stepNames(done)).toEqual(['Approve', 'Only in v1', 'Start']);
      expect(done.context.steps.Approve.data).toEqual({ approved: true });
    });

    it('the URL of a callback step a PUT renamed still resumes the executions waiting there on v1', async () => {
      const v1 = await flows.create([
        callback('Start'),
        callback('Approve'),
        { type: 'delay', name: 'Done', duration: 'PT0S' },
      ]);
      const pinned = await flows.startWaiting(v1.id, 'Approve');
      const v2 = await newVersion(v1, [
        callback('Start'),
        callback('Approval'),
        { type: 'delay', name: 'Done', duration: 'PT0S' },
      ]);
      const fresh = await flows.startWaiting(v1.id, 'Approval');

      await t.http.get(`${activationPath(v1, 'Approve')}?execution=${pinned.id}`).expect(200);
      expect((await flows.until(pinned.id, (e) => e.status === 'completed')).flowVersion).toBe(1);
      // The v2 execution waits at the new trigger, not the old one.
      const wrong = await t.http.get(`${activationPath(v1, 'Approve')}?execution=${fresh.id}`);
      expect(wrong.status).toBe(409);
      expect(wrong.body.code).toBe('EXECUTION_NOT_WAITING');
      await t.http.get(`${activationPath(v2, 'Approval')}?execution=${fresh.id}`).expect(200);
    });

    it('GET lists an application’s flows newest first, with cursor pagination and total', async () => {
      const project = seed.project.id;
      const application = (
        await t.http
          .post(`/api/projects/${project}/applications`)
          .set(adminAuth)
          .send({ name: 'Listing', slug: uniqueSlug('list') })
          .expect(201)
      ).body;
      const names = ['first', 'second', 'third'];
      for (const name of names) {
        await t.http
          .post(`/api/applications/${application.id}/flows`)
          .set(operator)
          .send({ name, steps: [callback('Start')] })
          .expect(201);
      }
      const path = `/api/applications/${application.id}/flows`;

      const page1 = (await t.http.get(`${path}?limit=2&includeTotal=true`).set(operator).expect(200)).body;
      expect(page1.items.map((flow: FlowBody) => flow.name)).toEqual(['third', 'second']);
      expect(page1.total).toBe(3);
      expect(page1.items[0].steps[0].activationUrl).toContain(`/trigger/${page1.items[0].steps[0].triggerId}/activate`);
      const page2 = (
        await t.http
          .get(`${path}?limit=2&cursor=${encodeURIComponent(page1.nextCursor)}`)
          .set(operator)
          .expect(200)
      ).body;
      expect(page2).toMatchObject({ nextCursor: null });
      expect(page2.items.map((flow: FlowBody) => flow.name)).toEqual(['first']);

      const badCursor = await t.http.get(`${path}?cursor=garbage`).set(operator).expect(400);
      expect(badCursor.body.errors).toEqual([{ field: 'cursor', message: expect.any(String) }]);
    });

    it('needs the operator role: a backend-only user gets 403, no token 401, every flow and execution route', async () => {
      const flow = await flows.create([callback('Start'), callback('Wait')]);
      const execution = await flows.start(flow.id);
      const routes: [string, string, object?][] = [
        ['post', `/api/applications/${seed.application.id}/flows`, { name: uniqueName(), steps: [callback('A')] }],
        ['get', `/api/applications/${seed.application.id}/flows`],
        ['get', `/api/flows/${flow.id}`],
        ['put', `/api/flows/${flow.id}`, { name: flow.name, steps: [callback('A')] }],
        ['post', `/api/flows/${flow.id}/executions`, {}],
        ['get', `/api/flows/${flow.id}/executions`],
        ['get', `/api/executions/${execution.id}`],
        ['post', `/api/executions/${execution.id}/cancel`],
      ];
      for (const [method, path, body] of routes) {
        const call = (headers: Record<string, string>) => {
          const request = (t.http as any)[method](path).set(headers);
          return body ? request.send(body) : request;
        };
        const forbidden = await call(bearer(seed.backendUser.token));
        expect({ route: `${method} ${path}`, status: forbidden.status, code: forbidden.body.code }).toEqual({
          route: `${method} ${path}`,
          status: 403,
          code: 'FORBIDDEN',
        });
        expect((await call({})).status).toBe(401);
      }
      // None of it changed anything.
      expect((await t.http.get(`/api/flows/${flow.id}`).set(operator).expect(200)).body).toEqual(flow);
      expect((await flows.get(execution.id)).status).not.toBe('cancelled');
    });

    it('unknown and non-UUID flow ids are 404 NOT_FOUND', async () => {
      for (const id of [randomUUID(), 'flow-1']) {
        for (const path of [`/api/flows/${id}`, `/api/flows/${id}/executions`]) {
          const response = await t.http.get(path).set(operator).expect(404);
          expect(response.body.code).toBe('NOT_FOUND');
        }
      }
      await t.http.get(`/api/executions/${randomUUID()}`).set(operator).expect(404);
    });
  });

  describe('executions API', () => {
    const callback = (name: string, extra: object = {}) => ({ type: 'callback', name, ...extra });

    it('POST /executions answers 201 with the execution; trigger.data is the input', async () => {
      const flow = await flows.create([{ type: 'delay', name: 'Pause', duration: 'PT1H' }]);

      const response = await t.http
        .post(`/api/flows/${flow.id}/executions`)
        .set(operator)
        .send({ input: { orderId: 42, lines: [1, 2] } })
        .expect(201);
      const execution: ExecutionBody = response.body;

      expect(execution).toMatchObject({ flowId: flow.id, flowVersion: 1, status: 'running', waitingAt: null });
      expect(execution.id).toMatch(UUID);
      expect(execution.context.trigger).toEqual({
        type: 'api',
        at: expect.stringMatching(ISO),
        data: { orderId: 42, lines: [1, 2] },
        user: null,
      });
      // The worker may already have started the delay by the time the answer is read.
      expect(execution.history[0]).toMatchObject({
        type: 'started',
        step: null,
        detail: expect.objectContaining({ trigger: 'api' }),
      });
    });

    it.each([
      ['an empty object', {}, {}],
      ['an array input', { input: [1, 'a'] }, [1, 'a']],
      ['a string input', { input: 'hello' }, 'hello'],
    ])('POST /executions with %s: trigger.data is the input', async (_, body, data) => {
      const flow = await flows.create([callback('Start'), callback('Wait')]);
      const execution: ExecutionBody = (
        await t.http.post(`/api/flows/${flow.id}/executions`).set(operator).send(body).expect(201)
      ).body;
      expect(execution.context.trigger.data).toEqual(data);
    });

    it('POST /executions refuses unknown fields', async () => {
      const flow = await flows.create([callback('Start')]);
      const response = await t.http
        .post(`/api/flows/${flow.id}/executions`)
        .set(operator)
        .send({ input: {}, status: 'completed' })
        .expect(400);
      expect(response.body.errors).toEqual([{ field: 'status', message: expect.any(String) }]);
    });

    it('a first step that is a callback counts as activated with the input', async () => {
      const flow = await flows.create([callback('Order placed'), callback('Paid')]);

      const started = await flows.start(flow.id, { order: 7 });

      expect(started.context.steps['Order placed']).toEqual({
        data: { order: 7 },
        user: null,
        at: expect.stringMatching(ISO),
      });
      // (The worker may already have moved it on to Paid by the time the answer is read.)
      expect(started.history.slice(0, 2).map((event) => [event.type, event.step])).toEqual([
        ['started', null],
        ['activated', 'Order placed'],
      ]);
      const waiting = await flows.waitingAt(started.id, 'Paid');
      expect(waiting.currentStep).toBe('Paid');
    });

    it('GET /executions/:id: currentStep, waitingAt, the context of SPEC §3, and history oldest first', async () => {
      const flow = await flows.create([
        callback('Start'),
        { type: 'delay', name: 'Breathe', duration: 'PT0S' },
        callback('Approve', { timeout: 'PT2H' }),
      ]);

      const execution = await flows.startWaiting(flow.id, 'Approve', { order: 1 });

      expect(execution.currentStep).toBe('Approve');
      expect(execution.waitingAt).toEqual({
        step: 'Approve',
        triggerId: flow.steps[2].triggerId,
        since: expect.stringMatching(ISO),
        deadline: new Date(Date.parse(execution.waitingAt!.since) + 2 * 3_600_000).toISOString(),
      });
      const context = execution.context;
      expect(context.run).toEqual({ id: execution.id });
      expect(context.execution).toEqual({ id: execution.id, startedAt: expect.stringMatching(ISO) });
      expect(context.flow).toMatchObject({ id: flow.id, name: flow.name });
      expect(context.tenant).toEqual({ id: seed.tenant.id, name: seed.tenant.name, slug: seed.tenant.slug });
      expect(context.project).toEqual({ id: seed.project.id, name: seed.project.name, slug: seed.project.slug });
      // The application's signing secret never lands in a context that templates can send anywhere.
      expect(context.application).toEqual({
        id: seed.application.id,
        name: seed.application.name,
        slug: seed.application.slug,
      });
      expect(context.trigger).toMatchObject({ type: 'api', data: { order: 1 } });
      expect(stepNames(execution)).toEqual(['Breathe', 'Start']);
      expect(context.callbacks).toEqual({
        Start: `${flow.steps[0].activationUrl}?execution=${execution.id}`,
        Approve: `${flow.steps[2].activationUrl}?execution=${execution.id}`,
      });
      expect(types(execution.history)).toEqual(['started', 'activated', 'step_completed', 'wait_for_callback']);
      const times = execution.history.map((event) => Date.parse(event.at));
      expect([...times].sort((a, b) => a - b)).toEqual(times);
      expect(execution.createdAt).toMatch(ISO);
    });

    it('GET /flows/:id/executions filters by status; a bad status is VALIDATION_FAILED naming status', async () => {
      const flow = await flows.create([callback('Start'), callback('Approve')]);
      const waiting = await flows.startWaiting(flow.id, 'Approve');
      const cancelled = await flows.startWaiting(flow.id, 'Approve');
      await t.http.post(`/api/executions/${cancelled.id}/cancel`).set(operator).expect(200);
      const path = `/api/flows/${flow.id}/executions`;

      const all = (await t.http.get(`${path}?includeTotal=true`).set(operator).expect(200)).body;
      expect(all.items.map((e: ExecutionBody) => e.id)).toEqual([cancelled.id, waiting.id]);
      expect(all.total).toBe(2);
      const onlyWaiting = (await t.http.get(`${path}?status=waiting&includeTotal=true`).set(operator).expect(200)).body;
      expect(onlyWaiting.items.map((e: ExecutionBody) => e.id)).toEqual([waiting.id]);
      expect(onlyWaiting.total).toBe(1);
      expect(onlyWaiting.items[0]).toMatchObject({ status: 'waiting', currentStep: 'Approve' });
      const paged = (await t.http.get(`${path}?limit=1`).set(operator).expect(200)).body;
      expect(paged.items.map((e: ExecutionBody) => e.id)).toEqual([cancelled.id]);
      expect(paged.nextCursor).toEqual(expect.any(String));

      const bad = await t.http.get(`${path}?status=paused`).set(operator).expect(400);
      expect(bad.body).toMatchObject({
        code: 'VALIDATION_FAILED',
        errors: [{ field: 'status', message: expect.any(String) }],
      });
    });

    it('cancel: 200 with the cancelled execution; again (or on any finished one) 409 EXECUTION_FINISHED', async () => {
      const flow = await flows.create([callback('Start'), callback('Approve')]);
      const execution = await flows.startWaiting(flow.id, 'Approve');

      const response = await t.http.post(`/api/executions/${execution.id}/cancel`).set(operator).expect(200);
      const cancelled: ExecutionBody = response.body;
      expect(cancelled).toMatchObject({ id: execution.id, status: 'cancelled', currentStep: null, waitingAt: null });
      expect(cancelled.history.at(-1)).toMatchObject({
        type: 'cancel',
        step: 'Approve',
        detail: expect.objectContaining({ from: 'waiting', to: 'cancelled' }),
      });

      const again = await t.http.post(`/api/executions/${execution.id}/cancel`).set(operator).expect(409);
      expect(again.body).toMatchObject({ statusCode: 409, code: 'EXECUTION_FINISHED' });

      const completed = await flows.start((await flows.create([callback('Only')])).id);
      await flows.until(completed.id, (e) => e.status === 'completed');
      await t.http.post(`/api/executions/${completed.id}/cancel`).set(operator).expect(409);
    });

    it('a delay step waits its duration: PT10M completes once the clock passed 10 minutes', async () => {
      const flow = await flows.create([callback('Start'), { type: 'delay', name: 'Cool down', duration: 'PT10M' }]);
      const started = await flows.start(flow.id);
      const delaying = await flows.until(started.id, (e) => types(e.history).includes('delay_started'));
      expect(delaying).toMatchObject({ status: 'running', currentStep: 'Cool down' });

      await passTime(9 * MINUTE);
      expect((await flows.get(started.id)).status).toBe('running');

      await passTime(MINUTE + 1_000);
      const done = await flows.until(started.id, (e) => e.status === 'completed');
      expect(done.context.steps['Cool down']).toEqual({ at: expect.stringMatching(ISO) });
      expect(done.currentStep).toBeNull();
    });

    it('PT0S is a valid delay and passes at once', async () => {
      const flow = await flows.create([callback('Start'), { type: 'delay', name: 'Now', duration: 'PT0S' }]);
      const execution = await flows.start(flow.id);
      const done = await flows.until(execution.id, (e) => e.status === 'completed');
      expect(types(done.history)).not.toContain('delay_started');
    });

    it('a cancelled delaying execution stays cancelled when its delay passes', async () => {
      const flow = await flows.create([
        callback('Start'),
        { type: 'delay', name: 'Cool down', duration: 'PT5M' },
        { type: 'delay', name: 'After', duration: 'PT0S' },
      ]);
      const started = await flows.start(flow.id);
      await flows.until(started.id, (e) => types(e.history).includes('delay_started'));
      const cancelled = (await t.http.post(`/api/executions/${started.id}/cancel`).set(operator).expect(200)).body;
      expect(cancelled.history.at(-1)).toMatchObject({ type: 'cancel', step: 'Cool down' });

      await passTime(6 * MINUTE);
      const after = await flows.get(started.id);
      expect(after.status).toBe('cancelled');
      expect(stepNames(after)).toEqual(['Start']);
    });

    it('a callback timeout with onTimeout fail fails the execution, with the reason in its history', async () => {
      const flow = await flows.create([callback('Start'), callback('Approve', { timeout: 'PT1M', onTimeout: 'fail' })]);
      const execution = await flows.startWaiting(flow.id, 'Approve');

      await passTime(MINUTE + 1_000);

      const failed = await flows.until(execution.id, (e) => e.status === 'failed');
      expect(failed).toMatchObject({ currentStep: null, waitingAt: null });
      expect(failed.history.at(-1)).toMatchObject({
        type: 'timeout_fail',
        step: 'Approve',
        detail: expect.objectContaining({ to: 'failed', reason: expect.stringContaining('PT1M') }),
      });
      const late = await t.http.get(`${activationPath(flow, 'Approve')}?execution=${execution.id}`);
      expect(late.status).toBe(409);
    });

    it('a callback timeout with onTimeout continue runs the next step, the timed-out step’s data null', async () => {
      const flow = await flows.create([
        callback('Start'),
        callback('Approve', { timeout: 'PT1M', onTimeout: 'continue' }),
        { type: 'delay', name: 'Next', duration: 'PT0S' },
      ]);
      const execution = await flows.startWaiting(flow.id, 'Approve');

      await passTime(MINUTE + 1_000);

      const done = await flows.until(execution.id, (e) => e.status === 'completed');
      expect(done.context.steps.Approve).toMatchObject({ data: null, user: null });
      expect(stepNames(done)).toEqual(['Start', 'Approve', 'Next'].sort());
      expect(types(done.history)).toContain('timeout_continue');
    });
  });

  describe('webhook steps', () => {
    it('templates keep JSON types when a value is exactly one {{ }}, and interpolate as text inside longer strings', async () => {
      const flow = await flows.create([
        { type: 'callback', name: 'Order' },
        {
          type: 'webhook',
          name: 'Send',
          backendId: backend.id,
          invocationMethod: {
            ...withExecutionHeader,
            body: {
              number: '{{ .steps.Order.data.total }}',
              object: '{{ .steps.Order.data.customer }}',
              array: '{{ .steps.Order.data.lines }}',
              boolean: '{{ .steps.Order.data.express }}',
              missing: '{{ .steps.Order.data.nowhere.deeper }}',
              string: '{{ .steps.Order.data.customer.name }}',
              text: 'Order of {{ .steps.Order.data.customer.name }}: {{ .steps.Order.data.total }} for {{ .steps.Order.data.lines }}, {{ .steps.Order.data.nope }}',
              '{{ .run.id }}': 'keys are never templated',
              literal: 42,
              nested: [{ id: '{{ .run.id }}' }],
            },
          },
        },
      ]);
      const input = { total: 99.5, customer: { name: 'Ada', vip: true }, lines: [1, 2], express: false };

      const execution = await flows.start(flow.id, input);
      const request = await requestOf(execution.id);

      expect(JSON.parse(request.body)).toEqual({
        number: 99.5,
        object: { name: 'Ada', vip: true },
        array: [1, 2],
        boolean: false,
        missing: null,
        string: 'Ada',
        text: 'Order of Ada: 99.5 for [1,2], null',
        '{{ .run.id }}': 'keys are never templated',
        literal: 42,
        nested: [{ id: execution.id }],
      });
      const done = await flows.until(execution.id, (e) => e.status === 'completed');
      // The answer lands in steps.<name>.response.
      expect(done.context.steps.Send.response).toEqual({ status: 200, body: { status: 'success', path: '/backend' } });
    });

    it('without a body template the body is the whole execution context', async () => {
      const flow = await flows.create([
        { type: 'callback', name: 'Start' },
        { type: 'webhook', name: 'Send', backendId: backend.id, invocationMethod: withExecutionHeader },
      ]);
      const execution = await flows.start(flow.id, { a: 1 });
      const body = JSON.parse((await requestOf(execution.id)).body);
      expect(body).toMatchObject({
        run: { id: execution.id },
        flow: { id: flow.id },
        trigger: { type: 'api', data: { a: 1 } },
        steps: { Start: { data: { a: 1 } } },
        callbacks: { Start: expect.stringContaining(`?execution=${execution.id}`) },
      });
    });

    it('headers add to the standard delivery headers but cannot replace them; method is honoured', async () => {
      const flow = await flows.create([
        { type: 'callback', name: 'Start' },
        {
          type: 'webhook',
          name: 'Send',
          backendId: backend.id,
          invocationMethod: {
            method: 'PUT',
            headers: {
              'x-execution': '{{ .run.id }}',
              'X-Order-Count': '{{ .trigger.data.count }}',
              'Content-Type': 'text/plain',
              'webhook-id': 'msg_forged',
              'User-Agent': 'evil/1.0',
            },
            body: { ok: true },
          },
        },
      ]);
      const execution = await flows.start(flow.id, { count: 3 });
      const request = await requestOf(execution.id);

      expect(request.method).toBe('PUT');
      expect(request.headers['x-order-count']).toBe('3');
      expect(request.headers['content-type']).toBe('application/json');
      expect(request.headers['webhook-id']).toMatch(/^msg_[0-9A-Z]{26}$/);
      expect(request.headers['user-agent']).toMatch(/^Switchyard\//);
      expect(new Webhook(backend.signingSecret).verify(request.body, request.headers as never)).toEqual({ ok: true });
    });

    it("a url-only webhook step is signed with the application's secret", async () => {
      const flow = await flows.create([
        { type: 'callback', name: 'Start' },
        {
          type: 'webhook',
          name: 'Send',
          invocationMethod: {
            url: receiver.url('/direct/{{ .trigger.data.tag }}'),
            ...withExecutionHeader,
            body: { hi: 1 },
          },
        },
      ]);
      const execution = await flows.start(flow.id, { tag: 'abc' });
      const request = await requestOf(execution.id);

      expect(request.path).toBe('/direct/abc');
      expect(new Webhook(seed.application.signingSecret).verify(request.body, request.headers as never)).toEqual({
        hi: 1,
      });
      expect(() => new Webhook(backend.signingSecret).verify(request.body, request.headers as never)).toThrow();
      await flows.until(execution.id, (e) => e.status === 'completed');
    });

    it('cancel during a webhook step: the request in flight finishes once, nothing after the step runs', async () => {
      const answer = receiver.respond;
      receiver.respond = (request, index) =>
        request.path.startsWith('/slow')
          ? { status: 200, body: '{"status":"success"}', delayMs: 500 }
          : answer(request, index);
      try {
        const flow = await flows.create([
          { type: 'callback', name: 'Start' },
          { type: 'webhook', name: 'Slow', invocationMethod: { url: receiver.url('/slow'), ...withExecutionHeader } },
          { type: 'delay', name: 'After', duration: 'PT0S' },
        ]);
        const execution = await flows.start(flow.id);
        await requestOf(execution.id);
        const cancelled = await t.http.post(`/api/executions/${execution.id}/cancel`).set(operator).expect(200);
        expect(cancelled.body).toMatchObject({ status: 'cancelled', currentStep: null });

        // The delivery was already sent: it finishes (at least once, as every delivery), and its
        // outcome finds the execution cancelled and moves nothing.
        const delivery = await eventually(async () => {
          const { body } = await t.http.get('/api/deliveries?limit=200').set(operator).expect(200);
          return body.items.find(
            (item: { origin: { id: string }; status: string }) =>
              item.origin.id === execution.id && item.status === 'SUCCEEDED',
          );
        });
        expect(delivery).toMatchObject({ attempts: 1 });
        await t.app.get(FlowWorker).wake();
        const after = await flows.get(execution.id);
        expect(after).toMatchObject({ status: 'cancelled', currentStep: null });
        expect(after.history.at(-1)).toMatchObject({ type: 'cancel', step: 'Slow' });
        expect(stepNames(after)).toEqual(['Start']);
        expect(receiver.requests.filter((request) => request.headers['x-execution'] === execution.id)).toHaveLength(1);
      } finally {
        receiver.respond = answer;
      }
    });

    it('a webhook step whose delivery ends DEAD fails the execution with that reason', async () => {
      const flow = await flows.create([
        { type: 'callback', name: 'Start' },
        { type: 'webhook', name: 'Doomed', invocationMethod: { url: receiver.url('/fail'), ...withExecutionHeader } },
        { type: 'delay', name: 'Never', duration: 'PT0S' },
      ]);
      const execution = await flows.start(flow.id);

      const failed = await flows.until(execution.id, (e) => e.status === 'failed');
      expect(failed.history.at(-1)).toMatchObject({
        type: 'fail',
        step: 'Doomed',
        detail: expect.objectContaining({ reason: 'webhook delivery DEAD', statusCode: 500 }),
      });
      expect(stepNames(failed)).toEqual(['Start']);
      // Both attempts of the schedule ("0,100ms") were made.
      expect(receiver.requests.filter((request) => request.headers['x-execution'] === execution.id)).toHaveLength(2);
    });

    it('a template that fails at run time fails the execution, with the error in its history', async () => {
      const flow = await flows.create([
        { type: 'callback', name: 'Start' },
        {
          type: 'webhook',
          name: 'Send',
          backendId: backend.id,
          invocationMethod: { ...withExecutionHeader, body: { value: '{{ .trigger.data.text.field }}' } },
        },
      ]);
      const execution = await flows.start(flow.id, { text: 'a string cannot be indexed' });

      const failed = await flows.until(execution.id, (e) => e.status === 'failed');
      expect(failed.history.at(-1)).toMatchObject({
        type: 'fail',
        step: 'Send',
        detail: expect.objectContaining({ reason: expect.stringMatching(/template failed: .*Cannot index string/) }),
      });
      expect(receiver.requests.some((request) => request.headers['x-execution'] === execution.id)).toBe(false);
    });
  });

  describe('cron triggers that start flows', () => {
    it('POST /triggers/:id/run starts an execution whose trigger.data is the cron payload (FLOW_STARTED)', async () => {
      const flow = await flows.create([
        { type: 'callback', name: 'Tick' },
        { type: 'callback', name: 'Then' },
      ]);
      const trigger = (
        await t.http
          .post(`/api/applications/${seed.application.id}/triggers`)
          .set(operator)
          .send({ name: uniqueName('nightly'), cronExpression: '0 3 1 1 *', runKey: 'nightly', flowId: flow.id })
          .expect(201)
      ).body;

      const run = (await t.http.post(`/api/triggers/${trigger.id}/run`).set(operator).expect(202)).body;

      expect(run).toMatchObject({ triggerId: trigger.id, outcome: 'FLOW_STARTED', manual: true, deliveries: [] });
      expect(run.executionId).toMatch(UUID);
      const execution = await flows.get(run.executionId);
      const payload = {
        triggerId: trigger.id,
        triggerName: trigger.name,
        cronExpression: '0 3 1 1 *',
        runKey: 'nightly',
        executionTime: run.scheduledFor.replace('.000Z', 'Z'),
        application: { id: seed.application.id, name: seed.application.name, slug: seed.application.slug },
        tenant: { id: seed.tenant.id, name: seed.tenant.name, slug: seed.tenant.slug },
        project: { id: seed.project.id, name: seed.project.name, slug: seed.project.slug },
      };
      expect(execution.context.trigger).toMatchObject({ type: 'cron', data: payload, user: null });
      // The first step is a callback: the firing counts as its activation.
      expect(execution.context.steps.Tick.data).toEqual(payload);
      await flows.waitingAt(run.executionId, 'Then');
      const runs = (await t.http.get(`/api/triggers/${trigger.id}/runs`).set(operator).expect(200)).body.items;
      expect(runs[0]).toMatchObject({ id: run.id, outcome: 'FLOW_STARTED', executionId: run.executionId });
    });
  });
});
