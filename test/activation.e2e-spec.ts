import { randomUUID } from 'node:crypto';
import { MikroORM } from '@mikro-orm/postgresql';
import type { Response } from 'supertest';
import { startTestApp, type TestApp } from './support/app.js';
import { createMachineUser, type SeededMachineUser, seedTenant, type SeededTenant } from './support/fixtures.js';
import { activationPath, type ExecutionBody, type FlowBody, FlowsClient } from './support/flows.js';

/**
 * SPEC §4 and its §7 fine print, one test per rule and per error code: what the data of an
 * activation is, which executions resume, auth, schema, condition, Idempotency-Key, size, and the
 * order the checks run in (each order test sets up two failures and expects the earlier one).
 */

const MIB = 1024 * 1024;
const MISSING_ROLE_MESSAGE = 'Unable to execute the callback. User is missing required security role(s)';

describe('activation of callback steps (SPEC §4)', () => {
  let t: TestApp;
  let seed: SeededTenant;
  let flows: FlowsClient;
  /** Holds the `approver` role the auth steps require. */
  let approver: SeededMachineUser;
  /** A valid machine user of the flow's tenant without `approver`. */
  let unprivileged: SeededMachineUser;
  /** Holds `approver`, but in another tenant. */
  let foreignApprover: SeededMachineUser;

  beforeAll(async () => {
    t = await startTestApp({ env: { SCHEDULER_TICK_MS: '50' } });
    seed = await seedTenant(t);
    flows = new FlowsClient(t, seed);
    approver = await createMachineUser(t, seed.tenant.id, ['approver']);
    unprivileged = await createMachineUser(t, seed.tenant.id, ['backend']);
    const other = await seedTenant(t);
    foreignApprover = await createMachineUser(t, other.tenant.id, ['approver']);
  });
  afterAll(() => t.close());

  /** Start → Approve: API starts count Start as activated, so executions wait at Approve. */
  function approvalFlow(approve: object = {}): Promise<FlowBody> {
    return flows.create([
      { type: 'callback', name: 'Start' },
      { type: 'callback', name: 'Approve', ...approve },
    ]);
  }

  function expectError(response: Response, statusCode: number, code: string): void {
    expect({ status: response.status, body: response.body }).toEqual({
      status: statusCode,
      body: expect.objectContaining({ statusCode, code, message: expect.any(String) }),
    });
    // Errors never claim to have activated anything.
    expect(response.headers['x-activation']).toBeUndefined();
  }

  async function expectStillWaiting(execution: ExecutionBody, step = 'Approve'): Promise<void> {
    const now = await flows.get(execution.id);
    expect(now.status).toBe('waiting');
    expect(now.waitingAt?.step).toBe(step);
    expect(now.history.filter((event) => event.type === 'activate')).toEqual([]);
  }

  async function executionsOf(flow: FlowBody): Promise<ExecutionBody[]> {
    return (await t.http.get(`/api/flows/${flow.id}/executions`).set(flows.operator).expect(200)).body.items;
  }

  /** Attempts that never reached an execution are the trigger's history (execution_id null). */
  function triggerHistory(triggerId: string) {
    return t.app
      .get(MikroORM)
      .em.fork()
      .execute<{ type: string; step: string; detail: Record<string, unknown> }[]>(
        `select type, step, detail from flow_events where trigger_id = ? and execution_id is null order by seq`,
        [triggerId],
      );
  }

  describe('flow-starting step', () => {
    it('GET: each call starts an execution whose data are the query parameters, a repeated key giving an array', async () => {
      const flow = await flows.create([
        { type: 'callback', name: 'Order placed' },
        { type: 'callback', name: 'Paid' },
      ]);
      const response = await t.http.get(`${activationPath(flow, 'Order placed')}?order=42&tag=a&tag=b`).expect(200);

      expect(response.text).toBe('');
      expect(response.headers['x-activation']).toBe('activated');
      const execution = await flows.get(response.headers['x-execution-id']);
      const data = { order: '42', tag: ['a', 'b'] };
      expect(execution.context.trigger).toMatchObject({ type: 'callback', data, user: null });
      expect(execution.context.steps['Order placed'].data).toEqual(data);

      const again = await t.http.get(`${activationPath(flow, 'Order placed')}?order=43`).expect(200);
      expect(again.headers['x-execution-id']).not.toBe(execution.id);
      expect(await executionsOf(flow)).toHaveLength(2);
    });

    it.each([
      ['an object', { order: { id: 42, lines: [1, 2] } }],
      ['an array', [1, 'two', { three: 3 }]],
      ['a string', 'hello'],
      ['a number', 42.5],
      ['a boolean', false],
    ])('POST: the JSON body is the data, whatever JSON value it is (%s), and the query is ignored', async (_, body) => {
      const flow = await flows.create([{ type: 'callback', name: 'Begin' }]);
      const response = await t.http
        .post(`${activationPath(flow, 'Begin')}?from=query&execution=any`)
        .set('content-type', 'application/json')
        .send(JSON.stringify(body))
        .expect(200);

      const execution = await flows.get(response.headers['x-execution-id']);
      expect(execution.context.trigger.data).toEqual(body);
      expect(execution.context.steps.Begin.data).toEqual(body);
    });

    it.each([
      ['without a content type', {}],
      ['with content-type application/json', { 'content-type': 'application/json' }],
    ])('POST: an empty body is {} (%s)', async (_, headers) => {
      const flow = await flows.create([{ type: 'callback', name: 'Begin' }]);
      const response = await t.http.post(activationPath(flow, 'Begin')).set(headers).expect(200);

      expect((await flows.get(response.headers['x-execution-id'])).context.trigger.data).toEqual({});
    });
  });

  describe('mid-flow step: which execution resumes', () => {
    it('GET ?execution=<id>: the other query parameters are the data, `execution` itself is not', async () => {
      const flow = await approvalFlow();
      const execution = await flows.startWaiting(flow.id, 'Approve');

      const response = await t.http
        .get(`${activationPath(flow, 'Approve')}?execution=${execution.id}&status=paid&tag=a&tag=b`)
        .expect(200);

      expect(response.text).toBe('');
      expect(response.headers['x-execution-id']).toBe(execution.id);
      expect(response.headers['x-activation']).toBe('activated');
      // The activation committed before the answer: it is no longer waiting.
      expect((await flows.get(execution.id)).status).not.toBe('waiting');
      const done = await flows.until(execution.id, (e) => e.status === 'completed');
      expect(done.context.steps.Approve.data).toEqual({ status: 'paid', tag: ['a', 'b'] });
    });

    it('GET ?executionId=<id> works the same, and `executionId` is not data either', async () => {
      const flow = await approvalFlow();
      const execution = await flows.startWaiting(flow.id, 'Approve');

      await t.http.get(`${activationPath(flow, 'Approve')}?executionId=${execution.id}&ok=1`).expect(200);

      const done = await flows.until(execution.id, (e) => e.status === 'completed');
      expect(done.context.steps.Approve.data).toEqual({ ok: '1' });
    });

    it('POST ?execution=<id>: the JSON body is the data and the other query parameters are ignored', async () => {
      const flow = await approvalFlow();
      const execution = await flows.startWaiting(flow.id, 'Approve');

      const response = await t.http
        .post(`${activationPath(flow, 'Approve')}?execution=${execution.id}&ignored=yes`)
        .send([{ sku: 'A-1' }])
        .expect(200);

      expect(response.headers['x-execution-id']).toBe(execution.id);
      const done = await flows.until(execution.id, (e) => e.status === 'completed');
      expect(done.context.steps.Approve.data).toEqual([{ sku: 'A-1' }]);
    });

    it('POST with an empty body resumes with {}', async () => {
      const flow = await approvalFlow();
      const execution = await flows.startWaiting(flow.id, 'Approve');

      await t.http.post(`${activationPath(flow, 'Approve')}?executionId=${execution.id}`).expect(200);

      expect((await flows.until(execution.id, (e) => e.status === 'completed')).context.steps.Approve.data).toEqual({});
    });

    it('POST text/plain: the text is the data, as one JSON string; a form body is VALIDATION_FAILED', async () => {
      const flow = await approvalFlow();
      const execution = await flows.startWaiting(flow.id, 'Approve');
      const path = `${activationPath(flow, 'Approve')}?execution=${execution.id}`;

      // curl -d without a content type sends a form: refused with a hint, nothing resumes.
      const form = await t.http.post(path).type('form').send('approved=yes');
      expectError(form, 400, 'VALIDATION_FAILED');
      expect(form.body.message).toContain('application/json');
      await expectStillWaiting(execution);

      await t.http.post(path).type('text/plain').send('approved by ops').expect(200);
      const done = await flows.until(execution.id, (e) => e.status === 'completed');
      expect(done.context.steps.Approve.data).toBe('approved by ops');
    });

    it('UUIDs are matched regardless of case (the seed’s URLs are uppercase), in the path and in `execution`', async () => {
      const flow = await approvalFlow();
      const execution = await flows.startWaiting(flow.id, 'Approve');
      const upper = `/api/automation/flow/${flow.id.toUpperCase()}/trigger/${flow.steps[1].triggerId!.toUpperCase()}/activate`;

      const response = await t.http.get(`${upper}?execution=${execution.id.toUpperCase()}`).expect(200);

      expect(response.headers['x-execution-id']).toBe(execution.id);
    });

    it('with both `execution` and `executionId`, `execution` wins', async () => {
      const flow = await approvalFlow();
      const chosen = await flows.startWaiting(flow.id, 'Approve');
      const other = await flows.startWaiting(flow.id, 'Approve');

      const response = await t.http
        .get(`${activationPath(flow, 'Approve')}?executionId=${other.id}&execution=${chosen.id}`)
        .expect(200);

      expect(response.headers['x-execution-id']).toBe(chosen.id);
      await expectStillWaiting(other);
    });

    it.each(['ANY', 'All'])('`execution` is case-sensitive: %s is an id, so 404 EXECUTION_NOT_FOUND', async (value) => {
      const flow = await approvalFlow();
      const waiting = await flows.startWaiting(flow.id, 'Approve');

      expectError(
        await t.http.get(`${activationPath(flow, 'Approve')}?execution=${value}`),
        404,
        'EXECUTION_NOT_FOUND',
      );
      await expectStillWaiting(waiting);
    });

    it.each([
      ['a malformed id', 'not-a-uuid'],
      ['an unknown id', randomUUID()],
    ])('%s is 404 EXECUTION_NOT_FOUND', async (_, id) => {
      const flow = await approvalFlow();
      await flows.startWaiting(flow.id, 'Approve');

      expectError(
        await t.http.post(`${activationPath(flow, 'Approve')}?execution=${id}`).send({}),
        404,
        'EXECUTION_NOT_FOUND',
      );
    });

    it("another flow's execution is 404 EXECUTION_NOT_FOUND", async () => {
      const flow = await approvalFlow();
      const elsewhere = await flows.startWaiting((await approvalFlow()).id, 'Approve');

      expectError(
        await t.http.get(`${activationPath(flow, 'Approve')}?execution=${elsewhere.id}`),
        404,
        'EXECUTION_NOT_FOUND',
      );
      await expectStillWaiting(elsewhere);
    });

    it('an execution that is not waiting at this step is 409 EXECUTION_NOT_WAITING, noted in its history', async () => {
      const flow = await flows.create([
        { type: 'callback', name: 'Start' },
        { type: 'callback', name: 'First' },
        { type: 'callback', name: 'Second' },
      ]);
      const execution = await flows.startWaiting(flow.id, 'First');

      // Waiting, but at First, not at Second.
      expectError(
        await t.http.get(`${activationPath(flow, 'Second')}?execution=${execution.id}`),
        409,
        'EXECUTION_NOT_WAITING',
      );
      await expectStillWaiting(execution, 'First');

      // Finished: cancelled executions wait nowhere.
      await t.http.post(`/api/executions/${execution.id}/cancel`).set(flows.operator).expect(200);
      expectError(
        await t.http.get(`${activationPath(flow, 'First')}?execution=${execution.id}`),
        409,
        'EXECUTION_NOT_WAITING',
      );
      const refused = (await flows.get(execution.id)).history.filter((event) => event.type === 'activation_refused');
      expect(refused.map((event) => event.step)).toEqual(['Second', 'First']);
    });

    it('?execution=any resumes exactly one of the waiting executions', async () => {
      const flow = await approvalFlow();
      const waiting = [await flows.startWaiting(flow.id, 'Approve'), await flows.startWaiting(flow.id, 'Approve')];

      const response = await t.http
        .post(`${activationPath(flow, 'Approve')}?execution=any`)
        .send({ n: 1 })
        .expect(200);

      const resumed = response.headers['x-execution-id'];
      expect(waiting.map((e) => e.id)).toContain(resumed);
      expect(response.headers['x-activation']).toBe('activated');
      await flows.until(resumed, (e) => e.status === 'completed');
      await expectStillWaiting(waiting.find((e) => e.id !== resumed)!);
    });

    it('?execution=all resumes every waiting execution once and answers a text/plain comma list', async () => {
      const flow = await approvalFlow();
      const waiting = [
        await flows.startWaiting(flow.id, 'Approve'),
        await flows.startWaiting(flow.id, 'Approve'),
        await flows.startWaiting(flow.id, 'Approve'),
      ];
      // Not waiting any more, so not part of `all`.
      await t.http.post(`/api/executions/${waiting[2].id}/cancel`).set(flows.operator).expect(200);

      const response = await t.http.get(`${activationPath(flow, 'Approve')}?execution=all&batch=7`).expect(200);

      expect(response.headers['content-type']).toMatch(/^text\/plain/);
      expect(response.headers['x-activation']).toBe('activated');
      expect(response.text.split(',').sort()).toEqual([waiting[0].id, waiting[1].id].sort());
      for (const execution of waiting.slice(0, 2)) {
        const done = await flows.until(execution.id, (e) => e.status === 'completed');
        expect(done.context.steps.Approve.data).toEqual({ batch: '7' });
        expect(done.history.filter((event) => event.type === 'activate')).toHaveLength(1);
      }
      expect((await flows.get(waiting[2].id)).status).toBe('cancelled');
    });

    it('?execution=all with Accept: application/json answers {"executions": [...]}', async () => {
      const flow = await approvalFlow();
      const waiting = [await flows.startWaiting(flow.id, 'Approve'), await flows.startWaiting(flow.id, 'Approve')];

      const response = await t.http
        .post(`${activationPath(flow, 'Approve')}?execution=all`)
        .set('accept', 'application/json')
        .send({})
        .expect(200);

      expect(response.headers['content-type']).toMatch(/^application\/json/);
      expect(Object.keys(response.body)).toEqual(['executions']);
      expect([...response.body.executions].sort()).toEqual(waiting.map((e) => e.id).sort());
    });

    it.each(['any', 'all'])('?execution=%s with nothing waiting is 404 NO_WAITING_EXECUTION', async (value) => {
      const flow = await approvalFlow();
      expectError(
        await t.http.get(`${activationPath(flow, 'Approve')}?execution=${value}`),
        404,
        'NO_WAITING_EXECUTION',
      );
      expectError(
        await t.http.post(`${activationPath(flow, 'Approve')}?execution=${value}`).send({}),
        404,
        'NO_WAITING_EXECUTION',
      );
    });

    it.each(['GET', 'POST'])('%s to a mid-flow step without `execution` is 400 EXECUTION_REQUIRED', async (method) => {
      const flow = await approvalFlow();
      const waiting = await flows.startWaiting(flow.id, 'Approve');
      const path = `${activationPath(flow, 'Approve')}?status=paid`;

      expectError(
        method === 'GET' ? await t.http.get(path) : await t.http.post(path).send({ status: 'paid' }),
        400,
        'EXECUTION_REQUIRED',
      );
      await expectStillWaiting(waiting);
    });
  });

  describe('unknown triggers', () => {
    it.each([
      ['an unknown flow id', () => `/api/automation/flow/${randomUUID()}/trigger/${randomUUID()}/activate`],
      [
        'a non-UUID flow id',
        (flow: FlowBody) => `/api/automation/flow/nope/trigger/${flow.steps[0].triggerId}/activate`,
      ],
      ['an unknown trigger id', (flow: FlowBody) => `/api/automation/flow/${flow.id}/trigger/${randomUUID()}/activate`],
      ['a non-UUID trigger id', (flow: FlowBody) => `/api/automation/flow/${flow.id}/trigger/start/activate`],
    ])('%s is 404 TRIGGER_NOT_FOUND', async (_, path) => {
      const flow = await approvalFlow();
      expectError(await t.http.get(path(flow)), 404, 'TRIGGER_NOT_FOUND');
      expectError(await t.http.post(path(flow)).send({}), 404, 'TRIGGER_NOT_FOUND');
    });

    it("another flow's trigger id under this flow is 404 TRIGGER_NOT_FOUND", async () => {
      const flow = await approvalFlow();
      const other = await approvalFlow();
      const path = `/api/automation/flow/${flow.id}/trigger/${other.steps[0].triggerId}/activate`;

      expectError(await t.http.post(path).send({}), 404, 'TRIGGER_NOT_FOUND');
      expect(await executionsOf(other)).toEqual([]);
    });
  });

  describe('auth: MACHINE_USER', () => {
    const requireApprover = (onFail: 'ERROR' | 'IGNORE') => ({
      auth: { type: 'MACHINE_USER', requiredRoles: ['approver'], onFail },
    });

    it.each([
      ['no token', () => ({})],
      ['an invalid bearer token', () => ({ authorization: 'Bearer sy_not-a-real-token-at-all' })],
      ['an invalid user-token', () => ({ 'user-token': 'sy_not-a-real-token-at-all' })],
      ["another tenant's token", () => ({ authorization: `Bearer ${foreignApprover.token}` })],
      ["another tenant's token in user-token", () => ({ 'user-token': foreignApprover.token })],
    ])('onFail ERROR with %s is 401 CALLBACK_AUTH_FAILED and resumes nothing', async (_, headers) => {
      const flow = await approvalFlow(requireApprover('ERROR'));
      const execution = await flows.startWaiting(flow.id, 'Approve');

      const response = await t.http
        .post(`${activationPath(flow, 'Approve')}?execution=${execution.id}`)
        .set(headers())
        .send({});

      expectError(response, 401, 'CALLBACK_AUTH_FAILED');
      await expectStillWaiting(execution);
    });

    it('a valid token lacking a required role is 403 MISSING_ROLE with the seed’s message', async () => {
      const flow = await approvalFlow(requireApprover('ERROR'));
      const execution = await flows.startWaiting(flow.id, 'Approve');

      const response = await t.http
        .get(`${activationPath(flow, 'Approve')}?execution=${execution.id}`)
        .set('user-token', unprivileged.token);

      expect(response.status).toBe(403);
      expect(response.body).toEqual({ statusCode: 403, code: 'MISSING_ROLE', message: MISSING_ROLE_MESSAGE });
      await expectStillWaiting(execution);
    });

    it('a token in the user-token header activates, and the machine user becomes the step’s user', async () => {
      const flow = await approvalFlow(requireApprover('ERROR'));
      const execution = await flows.startWaiting(flow.id, 'Approve');

      await t.http
        .post(`${activationPath(flow, 'Approve')}?execution=${execution.id}`)
        .set('user-token', approver.token)
        .send({ ok: true })
        .expect(200);

      const done = await flows.until(execution.id, (e) => e.status === 'completed');
      expect(done.context.steps.Approve.user).toEqual({
        id: approver.machineUser.id,
        username: approver.machineUser.username,
        name: approver.machineUser.name,
        roles: ['approver'],
      });
    });

    it('a bearer token on a flow-starting step starts the flow with the user as trigger.user', async () => {
      const flow = await flows.create([{ type: 'callback', name: 'Start', ...requireApprover('ERROR') }]);

      const response = await t.http
        .post(activationPath(flow, 'Start'))
        .set('authorization', `Bearer ${approver.token}`)
        .send({ go: 1 })
        .expect(200);

      const execution = await flows.get(response.headers['x-execution-id']);
      const user = { id: approver.machineUser.id, username: approver.machineUser.username };
      expect(execution.context.trigger.user).toMatchObject(user);
      expect(execution.context.steps.Start.user).toMatchObject(user);
    });

    it.each([
      ['no token', () => ({})],
      ['a token lacking the role', () => ({ 'user-token': unprivileged.token })],
      ["another tenant's token", () => ({ 'user-token': foreignApprover.token })],
    ])('onFail IGNORE with %s answers 200 X-Activation: ignored and activates nothing', async (_, headers) => {
      const flow = await approvalFlow(requireApprover('IGNORE'));
      const execution = await flows.startWaiting(flow.id, 'Approve');

      const response = await t.http
        .post(`${activationPath(flow, 'Approve')}?execution=${execution.id}`)
        .set(headers())
        .send({})
        .expect(200);

      expect(response.text).toBe('');
      expect(response.headers['x-activation']).toBe('ignored');
      expect(response.headers['x-execution-id']).toBeUndefined();
      await expectStillWaiting(execution);
    });

    it('onFail IGNORE on a flow-starting step starts nothing', async () => {
      const flow = await flows.create([{ type: 'callback', name: 'Start', ...requireApprover('IGNORE') }]);

      const response = await t.http.get(activationPath(flow, 'Start')).expect(200);

      expect(response.headers['x-activation']).toBe('ignored');
      expect(await executionsOf(flow)).toEqual([]);
    });

    it('refused attempts are in the trigger’s history (they reached no execution)', async () => {
      const flow = await approvalFlow(requireApprover('ERROR'));
      const execution = await flows.startWaiting(flow.id, 'Approve');
      const path = `${activationPath(flow, 'Approve')}?execution=${execution.id}`;

      await t.http.get(path).expect(401);
      await t.http.get(path).set('user-token', unprivileged.token).expect(403);
      await t.http
        .get(`${activationPath(flow, 'Approve')}?execution=${randomUUID()}`)
        .set('user-token', approver.token);

      const history = await triggerHistory(flow.steps[1].triggerId!);
      expect(history).toEqual([
        {
          type: 'activation_refused',
          step: 'Approve',
          detail: expect.objectContaining({ reason: 'CALLBACK_AUTH_FAILED' }),
        },
        { type: 'activation_refused', step: 'Approve', detail: expect.objectContaining({ reason: 'MISSING_ROLE' }) },
        {
          type: 'activation_refused',
          step: 'Approve',
          detail: expect.objectContaining({ code: 'EXECUTION_NOT_FOUND' }),
        },
      ]);
      expect((await flows.get(execution.id)).history.map((event) => event.type)).not.toContain('activation_refused');
    });
  });

  describe('schema', () => {
    const schema = {
      type: 'object',
      required: ['status'],
      properties: { status: { enum: ['paid', 'refunded'] }, amount: { type: 'number' } },
    };

    it('data that breaks the step’s JSON Schema is 400 INVALID_PAYLOAD with errors [{path, message}]', async () => {
      const flow = await approvalFlow({ schema });
      const execution = await flows.startWaiting(flow.id, 'Approve');

      const response = await t.http
        .post(`${activationPath(flow, 'Approve')}?execution=${execution.id}`)
        .send({ status: 'lost', amount: 'ten' });

      expectError(response, 400, 'INVALID_PAYLOAD');
      expect(response.body.errors).toEqual(
        expect.arrayContaining([
          { path: '/status', message: expect.any(String) },
          { path: '/amount', message: expect.any(String) },
        ]),
      );
      for (const error of response.body.errors) expect(Object.keys(error).sort()).toEqual(['message', 'path']);
      await expectStillWaiting(execution);

      await t.http
        .post(`${activationPath(flow, 'Approve')}?execution=${execution.id}`)
        .send({ status: 'paid', amount: 10 })
        .expect(200);
    });

    it('a flow-starting step validates too (a GET’s data are strings)', async () => {
      const flow = await flows.create([
        { type: 'callback', name: 'Start', schema: { type: 'object', required: ['order'] } },
      ]);
      expectError(await t.http.get(`${activationPath(flow, 'Start')}?other=1`), 400, 'INVALID_PAYLOAD');
      expect(await executionsOf(flow)).toEqual([]);
      await t.http.get(`${activationPath(flow, 'Start')}?order=1`).expect(200);
    });
  });

  describe('condition', () => {
    it('false: 200 ignored, the execution stays waiting, and the ignored call is in its history', async () => {
      const flow = await approvalFlow({ condition: { type: 'JQ', expressions: ['.data.status == "paid"'] } });
      const execution = await flows.startWaiting(flow.id, 'Approve');
      const path = `${activationPath(flow, 'Approve')}?execution=${execution.id}`;

      const ignored = await t.http.post(path).send({ status: 'pending' }).expect(200);
      expect(ignored.text).toBe('');
      expect(ignored.headers['x-activation']).toBe('ignored');
      await expectStillWaiting(execution);

      await t.http.post(path).send({ status: 'paid' }).expect(200);
      const done = await flows.until(execution.id, (e) => e.status === 'completed');
      const calls = done.history.filter((event) => event.step === 'Approve' && event.type.startsWith('activ'));
      expect(calls).toEqual([
        expect.objectContaining({
          type: 'activation_ignored',
          detail: expect.objectContaining({ reason: 'condition false' }),
        }),
        expect.objectContaining({ type: 'activate' }),
      ]);
    });

    it('sees {data, user, execution}: the caller and the execution’s context', async () => {
      const flow = await approvalFlow({
        auth: { type: 'MACHINE_USER' },
        condition: {
          type: 'JQ',
          expressions: ['.user.username == "nobody"', '.execution.trigger.data.order == .data.order'],
          combinator: 'or',
        },
      });
      const execution = await flows.startWaiting(flow.id, 'Approve', { order: 7 });
      const path = `${activationPath(flow, 'Approve')}?execution=${execution.id}`;

      const wrongOrder = await t.http.post(path).set('user-token', approver.token).send({ order: 8 }).expect(200);
      expect(wrongOrder.headers['x-activation']).toBe('ignored');
      const rightOrder = await t.http.post(path).set('user-token', approver.token).send({ order: 7 }).expect(200);
      expect(rightOrder.headers['x-activation']).toBe('activated');
    });

    it('false on a flow-starting step starts nothing', async () => {
      const flow = await flows.create([
        { type: 'callback', name: 'Start', condition: { type: 'JQ', expressions: ['.data.go == "yes"'] } },
      ]);

      const response = await t.http.get(`${activationPath(flow, 'Start')}?go=no`).expect(200);
      expect(response.headers['x-activation']).toBe('ignored');
      expect(await executionsOf(flow)).toEqual([]);
    });

    it('an expression that fails at run time on the caller’s data is an ignored call, not a 500', async () => {
      // `.data.status` cannot index a string: the condition does not hold for this data.
      const condition = { type: 'JQ', expressions: ['.data.status == "paid"'] };
      const starting = await flows.create([{ type: 'callback', name: 'Start', condition }]);
      const startingCall = await t.http.post(activationPath(starting, 'Start')).type('json').send('"paid"');
      expect({ status: startingCall.status, activation: startingCall.headers['x-activation'] }).toEqual({
        status: 200,
        activation: 'ignored',
      });
      expect(await executionsOf(starting)).toEqual([]);
      expect(await triggerHistory(starting.steps[0].triggerId!)).toEqual([
        {
          type: 'activation_ignored',
          step: 'Start',
          detail: { reason: expect.stringMatching(/^condition failed: .*Cannot index string/) },
        },
      ]);

      const flow = await approvalFlow({ condition });
      const execution = await flows.startWaiting(flow.id, 'Approve');
      const midCall = await t.http
        .post(`${activationPath(flow, 'Approve')}?execution=${execution.id}`)
        .type('json')
        .send('"paid"')
        .expect(200);
      expect(midCall.headers['x-activation']).toBe('ignored');
      await expectStillWaiting(execution);
      expect((await flows.get(execution.id)).history.at(-1)).toMatchObject({
        type: 'activation_ignored',
        step: 'Approve',
        detail: { reason: expect.stringMatching(/^condition failed: /), by: 'id' },
      });
    });

    it('any and all evaluate it per waiting execution', async () => {
      const flow = await approvalFlow({
        condition: { type: 'JQ', expressions: ['.execution.trigger.data.region == .data.region'] },
      });
      const [us, eu1, eu2] = [
        await flows.startWaiting(flow.id, 'Approve', { region: 'us' }),
        await flows.startWaiting(flow.id, 'Approve', { region: 'eu' }),
        await flows.startWaiting(flow.id, 'Approve', { region: 'eu' }),
      ];
      const path = activationPath(flow, 'Approve');

      // any: one of the executions whose condition holds, never the us one.
      const any = await t.http.post(`${path}?execution=any`).send({ region: 'eu' }).expect(200);
      expect([eu1.id, eu2.id]).toContain(any.headers['x-execution-id']);
      await expectStillWaiting(us);

      // all: every remaining one that passes (the other eu), still not us.
      const all = await t.http.post(`${path}?execution=all`).send({ region: 'eu' }).expect(200);
      expect(all.text.split(',')).toEqual([eu1.id, eu2.id].filter((id) => id !== any.headers['x-execution-id']));
      await expectStillWaiting(us);

      // Executions wait, but none passes: the ignored 200, not NO_WAITING_EXECUTION.
      for (const mode of ['any', 'all']) {
        const none = await t.http.post(`${path}?execution=${mode}`).send({ region: 'apac' }).expect(200);
        expect(none.headers['x-activation']).toBe('ignored');
        expect(none.text).toBe('');
      }
      await expectStillWaiting(us);
      // Each evaluation that did not hold is in the us execution's history, saying which mode tried.
      const ignoredBy = (await flows.get(us.id)).history
        .filter((event) => event.type === 'activation_ignored')
        .map((event) => event.detail?.by);
      expect(ignoredBy.filter((by) => by === 'all')).toHaveLength(2);
      expect(ignoredBy).toContain('any');
    });
  });

  describe('Idempotency-Key', () => {
    it('a repeat returns the first answer (X-Execution-Id included) and starts nothing twice', async () => {
      const flow = await flows.create([
        { type: 'callback', name: 'Start' },
        { type: 'callback', name: 'Then' },
      ]);
      const path = activationPath(flow, 'Start');

      const first = await t.http.post(path).set('Idempotency-Key', 'order-42').send({ n: 1 }).expect(200);
      const repeat = await t.http.post(path).set('Idempotency-Key', 'order-42').send({ n: 2 }).expect(200);

      expect(repeat.headers['x-execution-id']).toBe(first.headers['x-execution-id']);
      expect(repeat.headers['x-activation']).toBe(first.headers['x-activation']);
      expect(repeat.text).toBe(first.text);
      const executions = await executionsOf(flow);
      expect(executions.map((e) => e.id)).toEqual([first.headers['x-execution-id']]);
      expect(executions[0].context.trigger.data).toEqual({ n: 1 });
    });

    it('a repeat after the execution resumed answers 200 again (not 409) and resumes nothing twice', async () => {
      const flow = await flows.create([
        { type: 'callback', name: 'Start' },
        { type: 'callback', name: 'Approve' },
        { type: 'callback', name: 'Ship' },
      ]);
      const execution = await flows.startWaiting(flow.id, 'Approve');
      const path = `${activationPath(flow, 'Approve')}?execution=${execution.id}`;

      const first = await t.http.post(path).set('Idempotency-Key', 'approve-1').send({}).expect(200);
      await flows.waitingAt(execution.id, 'Ship');
      const repeat = await t.http.post(path).set('Idempotency-Key', 'approve-1').send({}).expect(200);

      expect(repeat.headers['x-execution-id']).toBe(first.headers['x-execution-id']);
      const history = (await flows.get(execution.id)).history;
      expect(history.filter((event) => event.type === 'activate')).toHaveLength(1);
      // Without the key the same call is refused: the execution waits elsewhere now.
      expectError(await t.http.post(path).send({}), 409, 'EXECUTION_NOT_WAITING');
    });

    it('an error answer is replayed too (NO_WAITING_EXECUTION stays the answer once something waits)', async () => {
      const flow = await approvalFlow();
      const path = `${activationPath(flow, 'Approve')}?execution=any`;

      const first = await t.http.post(path).set('Idempotency-Key', 'k-none').send({});
      expectError(first, 404, 'NO_WAITING_EXECUTION');
      const execution = await flows.startWaiting(flow.id, 'Approve');
      const repeat = await t.http.post(path).set('Idempotency-Key', 'k-none').send({});

      expect(repeat.status).toBe(404);
      expect(repeat.body).toEqual(first.body);
      expect(repeat.headers['content-type']).toBe(first.headers['content-type']);
      await expectStillWaiting(execution);
      // Another key is another call.
      const fresh = await t.http.post(path).set('Idempotency-Key', 'k-fresh').send({}).expect(200);
      expect(fresh.headers['x-execution-id']).toBe(execution.id);
    });

    it('keys are scoped to the trigger: the same key on another step is a different call', async () => {
      const flow = await approvalFlow();
      const started = await t.http.post(activationPath(flow, 'Start')).set('Idempotency-Key', 'shared').send({});
      const execution = await flows.waitingAt(started.headers['x-execution-id'], 'Approve');

      const resumed = await t.http
        .post(`${activationPath(flow, 'Approve')}?execution=${execution.id}`)
        .set('Idempotency-Key', 'shared')
        .send({})
        .expect(200);

      expect(resumed.headers['x-activation']).toBe('activated');
      await flows.until(execution.id, (e) => e.status === 'completed');
    });

    it.each([
      ['a space', 'order 42'],
      ['256 characters', 'k'.repeat(256)],
      ['a non-ASCII character', 'bestellung-ä'],
    ])('a key with %s is 400 VALIDATION_FAILED naming Idempotency-Key', async (_, key) => {
      const flow = await flows.create([{ type: 'callback', name: 'Start' }]);

      const response = await t.http.post(activationPath(flow, 'Start')).set('Idempotency-Key', key).send({});

      expectError(response, 400, 'VALIDATION_FAILED');
      expect(response.body.errors).toEqual([{ field: 'Idempotency-Key', message: expect.any(String) }]);
      expect(await executionsOf(flow)).toEqual([]);
    });

    it('a key of 255 visible characters is fine', async () => {
      const flow = await flows.create([{ type: 'callback', name: 'Start' }]);
      const key = '!~'.repeat(127) + 'x';
      const first = await t.http.post(activationPath(flow, 'Start')).set('Idempotency-Key', key).send({}).expect(200);
      const repeat = await t.http.post(activationPath(flow, 'Start')).set('Idempotency-Key', key).send({}).expect(200);
      expect(repeat.headers['x-execution-id']).toBe(first.headers['x-execution-id']);
    });

    it('is checked right after the trigger: before EXECUTION_REQUIRED and auth, after TRIGGER_NOT_FOUND', async () => {
      const badKey = { 'Idempotency-Key': 'has space' };
      const unknown = `/api/automation/flow/${randomUUID()}/trigger/${randomUUID()}/activate`;
      expectError(await t.http.post(unknown).set(badKey).send({}), 404, 'TRIGGER_NOT_FOUND');

      const flow = await approvalFlow({ auth: { type: 'MACHINE_USER', onFail: 'ERROR' } });
      // Mid-flow without `execution` and without credentials: the key is still what is reported.
      expectError(await t.http.post(activationPath(flow, 'Approve')).set(badKey).send({}), 400, 'VALIDATION_FAILED');
    });
  });

  describe('size', () => {
    /** A JSON object of exactly `bytes` bytes. */
    const bodyOf = (bytes: number) => JSON.stringify({ pad: 'x'.repeat(bytes - '{"pad":""}'.length) });

    it('a body over 1 MiB is 413 PAYLOAD_TOO_LARGE; exactly 1 MiB is accepted', async () => {
      const flow = await flows.create([{ type: 'callback', name: 'Start' }]);
      const path = activationPath(flow, 'Start');

      expectError(
        await t.http
          .post(path)
          .type('json')
          .send(bodyOf(MIB + 1)),
        413,
        'PAYLOAD_TOO_LARGE',
      );
      expect(await executionsOf(flow)).toEqual([]);
      await t.http.post(path).type('json').send(bodyOf(MIB)).expect(200);
    });

    it('a body that is not JSON is measured too: 2 MiB of text/plain is 413', async () => {
      const flow = await flows.create([{ type: 'callback', name: 'Start' }]);

      const response = await t.http
        .post(activationPath(flow, 'Start'))
        .type('text')
        .send('x'.repeat(2 * MIB));

      expectError(response, 413, 'PAYLOAD_TOO_LARGE');
      expect(await executionsOf(flow)).toEqual([]);
    });

    it('auth comes first: an unauthenticated oversize body to an ERROR-auth step is 401', async () => {
      const flow = await flows.create([
        { type: 'callback', name: 'Start', auth: { type: 'MACHINE_USER', onFail: 'ERROR' } },
      ]);
      const path = activationPath(flow, 'Start');

      expectError(
        await t.http
          .post(path)
          .type('json')
          .send(bodyOf(2 * MIB)),
        401,
        'CALLBACK_AUTH_FAILED',
      );
      expectError(
        await t.http
          .post(path)
          .set('user-token', approver.token)
          .type('json')
          .send(bodyOf(2 * MIB)),
        413,
        'PAYLOAD_TOO_LARGE',
      );
    });
  });

  describe('check order: trigger → execution named → auth → size → schema → execution → condition', () => {
    const guarded = {
      auth: { type: 'MACHINE_USER', onFail: 'ERROR' },
      schema: { type: 'object', required: ['status'] },
      condition: { type: 'JQ', expressions: ['.data.status == "paid"'] },
    };

    it('EXECUTION_REQUIRED comes before auth', async () => {
      const flow = await approvalFlow(guarded);
      expectError(await t.http.post(activationPath(flow, 'Approve')).send({}), 400, 'EXECUTION_REQUIRED');
    });

    it('auth comes before the schema: a schema violation by an unauthenticated caller is 401, not 400', async () => {
      const flow = await approvalFlow(guarded);
      const execution = await flows.startWaiting(flow.id, 'Approve');
      const path = `${activationPath(flow, 'Approve')}?execution=${execution.id}`;

      expectError(await t.http.post(path).send({ wrong: true }), 401, 'CALLBACK_AUTH_FAILED');
      expectError(
        await t.http.post(path).set('user-token', approver.token).send({ wrong: true }),
        400,
        'INVALID_PAYLOAD',
      );
    });

    it('auth comes before looking up the execution', async () => {
      const flow = await approvalFlow(guarded);
      expectError(
        await t.http.post(`${activationPath(flow, 'Approve')}?execution=nope`).send({}),
        401,
        'CALLBACK_AUTH_FAILED',
      );
    });

    it('size comes before the schema', async () => {
      const flow = await approvalFlow(guarded);
      const execution = await flows.startWaiting(flow.id, 'Approve');
      const oversize = JSON.stringify({ wrong: 'x'.repeat(MIB) });

      const response = await t.http
        .post(`${activationPath(flow, 'Approve')}?execution=${execution.id}`)
        .set('user-token', approver.token)
        .type('json')
        .send(oversize);
      expectError(response, 413, 'PAYLOAD_TOO_LARGE');
    });

    it('the schema comes before the execution lookup (EXECUTION_NOT_FOUND, EXECUTION_NOT_WAITING)', async () => {
      const flow = await approvalFlow(guarded);
      const auth = { 'user-token': approver.token };
      const execution = await flows.startWaiting(flow.id, 'Approve');
      await t.http.post(`/api/executions/${execution.id}/cancel`).set(flows.operator).expect(200);

      for (const id of ['nope', randomUUID(), execution.id]) {
        const response = await t.http
          .post(`${activationPath(flow, 'Approve')}?execution=${id}`)
          .set(auth)
          .send({});
        expectError(response, 400, 'INVALID_PAYLOAD');
      }
      expectError(
        await t.http
          .post(`${activationPath(flow, 'Approve')}?execution=nope`)
          .set(auth)
          .send({ status: 'x' }),
        404,
        'EXECUTION_NOT_FOUND',
      );
    });

    it('EXECUTION_NOT_WAITING comes before the condition', async () => {
      const flow = await approvalFlow(guarded);
      const execution = await flows.startWaiting(flow.id, 'Approve');
      await t.http.post(`/api/executions/${execution.id}/cancel`).set(flows.operator).expect(200);

      const response = await t.http
        .post(`${activationPath(flow, 'Approve')}?execution=${execution.id}`)
        .set('user-token', approver.token)
        .send({ status: 'not paid' });
      expectError(response, 409, 'EXECUTION_NOT_WAITING');
    });
  });
});
