import { startTestApp, type TestApp } from './support/app.js';
import { serverAvailable } from './support/database.js';
import { registerBackend, sql } from './support/deliveries.js';
import { bearer, seedTenant, type SeededTenant } from './support/fixtures.js';
import { eventually, type ReceivedRequest, TestReceiver } from './support/receiver.js';

// Three instances on one database need a PostgreSQL server (the PGlite fallback serves one
// connection); CI always has one, and there this suite always runs.
const hasServer = await serverAvailable();

const INSTANCES = 3;
const BATCH = 40;
/** Rounds of the conditional race: a refusing call holds the execution for a few ms per round. */
const ROUNDS = 15;

interface Answer {
  status: number;
  code: string | null;
  activation: string | null;
  executionId: string | null;
  /** The ids an `all` call resumed. */
  executions: string[];
}

interface RaceFlow {
  id: string;
  approveTriggerId: string;
  /** Receiver path of the flow's webhook step, so each test counts only its own deliveries. */
  hookPath: string;
}

/**
 * SPEC §4/§5: "an execution resumes exactly once per activation", and `any` resumes "exactly one
 * of the executions waiting at this step, even under concurrent calls". The calls go over real
 * HTTP to three instances (each with its own pool and flow worker) sharing one database, so the
 * only thing keeping two activations apart is the row locking in PostgreSQL.
 */
describe.runIf(hasServer)('activation races across three instances', () => {
  const apps: TestApp[] = [];
  let receiver: TestReceiver;
  let seed: SeededTenant;
  let backendId: string;
  let operator: Record<string, string>;

  beforeAll(async () => {
    receiver = await TestReceiver.start();
    const env = {
      ALLOW_HTTP_CALLBACKS: 'true',
      CALLBACK_ALLOWED_HOSTS: '127.0.0.1',
      DELIVERY_POLL_MS: '50',
      SCHEDULER_TICK_MS: '50',
      DATABASE_POOL_SIZE: '10',
    };
    const first = await startTestApp({ env, listen: true });
    apps.push(first);
    for (let index = 1; index < INSTANCES; index++)
      apps.push(await startTestApp({ database: first.database, env, listen: true }));
    seed = await seedTenant(first);
    operator = bearer(seed.operatorUser.token);
    backendId = (await registerBackend(first, seed.backendUser.token, 'approvals', receiver.url('/default'))).id;
  });
  afterAll(async () => {
    // The first instance owns (and drops) the database: close it last.
    for (const app of apps.slice(1)) await app.close();
    await apps[0]?.close();
    await receiver?.close();
  });

  /** [callback start] → [callback "Approve" mid-flow] → [webhook to the receiver carrying the run id]. */
  async function createFlow(name: string, approve: object = {}): Promise<RaceFlow> {
    const hookPath = `/${name}`;
    const flow = (
      await apps[0].http
        .post(`/api/applications/${seed.application.id}/flows`)
        .set(operator)
        .send({
          name,
          steps: [
            { type: 'callback', name: 'Submitted' },
            { type: 'callback', name: 'Approve', ...approve },
            {
              type: 'webhook',
              name: 'Notify',
              backendId,
              invocationMethod: { url: receiver.url(hookPath), body: { run: '{{ .run.id }}' } },
            },
          ],
        })
        .expect(201)
    ).body;
    return { id: flow.id, approveTriggerId: flow.steps[1].triggerId, hookPath };
  }

  /** Starts `count` executions by API, spread over the instances, and waits until all wait at Approve. */
  async function startWaiting(flow: RaceFlow, count: number): Promise<string[]> {
    const ids = await Promise.all(
      Array.from({ length: count }, async (_, index) => {
        const response = await apps[index % INSTANCES].http
          .post(`/api/flows/${flow.id}/executions`)
          .set(operator)
          .send({ input: { index } })
          .expect(201);
        return response.body.id as string;
      }),
    );
    await eventually(async () => (await waitingIds(flow)).length === count, 20_000);
    return ids;
  }

  async function waitingIds(flow: RaceFlow): Promise<string[]> {
    const rows = await sql<{ id: string }>(
      apps[0].database.url!,
      `select id from executions where flow_id = $1 and status = 'waiting' and waiting_trigger_id = $2`,
      [flow.id, flow.approveTriggerId],
    );
    return rows.map((row) => row.id);
  }

  /** One activation over real HTTP (fetch, no shared agent with supertest) to instance `index`. */
  async function activate(
    flow: RaceFlow,
    index: number,
    execution: string,
    data: object = { approved: true },
  ): Promise<Answer> {
    const base = apps[index % INSTANCES].baseUrl!;
    const response = await fetch(
      `${base}/api/automation/flow/${flow.id}/trigger/${flow.approveTriggerId}/activate?execution=${execution}`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ ...data, via: index % INSTANCES }),
      },
    );
    const text = await response.text();
    const json = text && response.headers.get('content-type')?.includes('json') ? JSON.parse(text) : null;
    return {
      status: response.status,
      code: json?.code ?? null,
      activation: response.headers.get('x-activation'),
      executionId: response.headers.get('x-execution-id'),
      executions: json?.executions ?? [],
    };
  }

  /** Every execution's history, as the API shows it. */
  async function histories(ids: string[]): Promise<Map<string, { status: string; types: string[] }>> {
    const entries = await Promise.all(
      ids.map(async (id) => {
        const body = (await apps[0].http.get(`/api/executions/${id}`).set(operator).expect(200)).body;
        return [id, { status: body.status, types: body.history.map((event: { type: string }) => event.type) }] as const;
      }),
    );
    return new Map(entries);
  }

  async function waitCompleted(flow: RaceFlow, count: number): Promise<void> {
    await eventually(async () => {
      const rows = await sql<{ count: string }>(
        apps[0].database.url!,
        `select count(*) from executions where flow_id = $1 and status = 'completed'`,
        [flow.id],
      );
      return Number(rows[0].count) === count;
    }, 30_000);
  }

  /** The receiver's requests for this flow, once no more arrive for a while (a duplicate would be late). */
  async function settledDeliveries(flow: RaceFlow, expected: number): Promise<ReceivedRequest[]> {
    const mine = () => receiver.requests.filter((request) => request.path === flow.hookPath);
    await eventually(async () => mine().length >= expected, 30_000);
    // Several poll intervals of every worker (50 ms): a second send of any step would show by now.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    return mine();
  }

  const count = <T>(values: T[]) => {
    const counts = new Map<T, number>();
    for (const value of values) counts.set(value, (counts.get(value) ?? 0) + 1);
    return counts;
  };

  it('80 concurrent `any` calls over three instances resume 40 waiting executions exactly once each', async () => {
    const flow = await createFlow('race-any');
    const ids = await startWaiting(flow, BATCH);

    const answers = await Promise.all(Array.from({ length: 2 * BATCH }, (_, index) => activate(flow, index, 'any')));

    const won = answers.filter((answer) => answer.status === 200);
    const lost = answers.filter((answer) => answer.status !== 200);
    expect(won).toHaveLength(BATCH);
    for (const answer of won) expect(answer.activation).toBe('activated');
    expect(lost).toHaveLength(BATCH);
    for (const answer of lost) expect(answer).toMatchObject({ status: 404, code: 'NO_WAITING_EXECUTION' });
    const resumed = won.map((answer) => answer.executionId);
    expect(new Set(resumed).size).toBe(BATCH);
    expect([...resumed].sort()).toEqual([...ids].sort());
    expect(await waitingIds(flow)).toEqual([]);

    // The step after the callback ran once per execution: one delivery each, carrying its run id.
    await waitCompleted(flow, BATCH);
    const deliveries = await settledDeliveries(flow, BATCH);
    expect(deliveries).toHaveLength(BATCH);
    const perRun = count(deliveries.map((request) => JSON.parse(request.body).run as string));
    expect([...perRun.keys()].sort()).toEqual([...ids].sort());
    expect([...perRun.values()].every((n) => n === 1)).toBe(true);
    expect(new Set(deliveries.map((request) => request.headers['webhook-id'])).size).toBe(BATCH);

    for (const [id, history] of await histories(ids)) {
      expect({ id, status: history.status }).toEqual({ id, status: 'completed' });
      expect(history.types.filter((type) => type === 'activate')).toHaveLength(1);
      expect(history.types.filter((type) => type === 'webhook_enqueued')).toHaveLength(1);
    }
  }, 90_000);

  it('`all`, `any` and by-id racing on a fresh batch: every execution resumed exactly once in total', async () => {
    const flow = await createFlow('race-mixed');
    const ids = await startWaiting(flow, BATCH);

    // 3 `all`, 20 `any` and 10 by-id calls (for the first ten executions), interleaved so every kind
    // overlaps the others, round-robin over the instances. Fewer `any` than executions, so `all` has
    // to take the rest while the others still hold rows (its contended path: wait, re-check, and
    // no deadlock with the deliveries that already finish for executions resumed a moment before).
    const calls: { kind: 'all' | 'any' | 'id'; execution: string }[] = [
      ...Array.from({ length: 3 }, () => ({ kind: 'all' as const, execution: 'all' })),
      ...Array.from({ length: BATCH / 2 }, () => ({ kind: 'any' as const, execution: 'any' })),
      ...ids.slice(0, 10).map((id) => ({ kind: 'id' as const, execution: id })),
    ];
    const order = interleave(calls);
    const answers = await Promise.all(
      order.map(async (call, index) => ({ call, answer: await activate(flow, index, call.execution) })),
    );

    const resumed: string[] = [];
    let byAll = 0;
    for (const { call, answer } of answers) {
      if (call.kind === 'all') {
        if (answer.status === 200) {
          expect(answer.activation).toBe('activated');
          expect(answer.executions.length).toBeGreaterThan(0);
          resumed.push(...answer.executions);
          byAll += answer.executions.length;
        } else expect(answer).toMatchObject({ status: 404, code: 'NO_WAITING_EXECUTION' });
      } else if (call.kind === 'any') {
        if (answer.status === 200) {
          expect(answer.activation).toBe('activated');
          resumed.push(answer.executionId!);
        } else expect(answer).toMatchObject({ status: 404, code: 'NO_WAITING_EXECUTION' });
      } else if (answer.status === 200) {
        expect(answer).toMatchObject({ activation: 'activated', executionId: call.execution });
        resumed.push(answer.executionId!);
      } else expect(answer).toMatchObject({ status: 409, code: 'EXECUTION_NOT_WAITING' });
    }
    // Each id answered by exactly one call, and together they are the whole batch.
    expect(resumed).toHaveLength(BATCH);
    expect([...resumed].sort()).toEqual([...ids].sort());
    expect(byAll).toBeGreaterThanOrEqual(BATCH - 20 - 10);
    expect(await waitingIds(flow)).toEqual([]);

    await waitCompleted(flow, BATCH);
    const deliveries = await settledDeliveries(flow, BATCH);
    expect(deliveries).toHaveLength(BATCH);
    expect(new Set(deliveries.map((request) => JSON.parse(request.body).run)).size).toBe(BATCH);
    for (const [id, history] of await histories(ids)) {
      expect({ id, status: history.status }).toEqual({ id, status: 'completed' });
      expect(history.types.filter((type) => type === 'activate')).toHaveLength(1);
    }
  }, 90_000);

  it('conditional `any`: calls whose condition fails never make one whose condition holds miss the execution', async () => {
    const flow = await createFlow('race-condition', {
      condition: { type: 'JQ', expressions: ['.data.approved == true'], combinator: 'and' },
    });
    // Each round: one waiting execution, eight calls it refuses and one it accepts, all at once. A
    // refusing call holds the execution while it evaluates; the accepting one must wait for it
    // and resume the execution, not answer NO_WAITING_EXECUTION for an execution that waits.
    for (let round = 0; round < ROUNDS; round++) {
      const [id] = await startWaiting(flow, 1);
      const calls = Array.from({ length: 9 }, (_, index) => (index === 4 ? { approved: true } : { approved: false }));
      const answers = await Promise.all(calls.map((data, index) => activate(flow, round + index, 'any', data)));

      expect({ round, answer: answers[4] }).toMatchObject({
        round,
        answer: { status: 200, activation: 'activated', executionId: id },
      });
      for (const answer of answers.filter((_, index) => index !== 4)) {
        // Ignored while it waited, or nothing left once the accepting call had resumed it.
        if (answer.status === 200) expect(answer.activation).toBe('ignored');
        else expect(answer).toMatchObject({ status: 404, code: 'NO_WAITING_EXECUTION' });
      }
      await waitCompleted(flow, round + 1);
    }
    expect(await settledDeliveries(flow, ROUNDS)).toHaveLength(ROUNDS);
  }, 90_000);

  it('`any` correlating by condition: 40 concurrent calls each resume the one execution their data names', async () => {
    const flow = await createFlow('race-correlate', {
      condition: { type: 'JQ', expressions: ['.data.index == .execution.trigger.data.index'], combinator: 'and' },
    });
    const ids = await startWaiting(flow, BATCH);
    const byIndex = new Map<number, string>();
    for (const id of ids) {
      const body = (await apps[0].http.get(`/api/executions/${id}`).set(operator).expect(200)).body;
      byIndex.set(body.context.trigger.data.index, id);
    }

    // Every call reads the same oldest candidates first; one that holds another's execution while
    // it evaluates must not make that other call miss it. Five calls name no execution at all.
    const calls = [...Array.from({ length: BATCH }, (_, index) => index), -1, -2, -3, -4, -5];
    const answers = await Promise.all(
      calls.map(async (index, position) => ({ index, answer: await activate(flow, position, 'any', { index }) })),
    );

    for (const { index, answer } of answers) {
      if (index >= 0) {
        expect({ index, answer }).toMatchObject({
          index,
          answer: { status: 200, activation: 'activated', executionId: byIndex.get(index) },
        });
      } else if (answer.status === 200) expect(answer.activation).toBe('ignored');
      else expect(answer).toMatchObject({ status: 404, code: 'NO_WAITING_EXECUTION' });
    }
    expect(await waitingIds(flow)).toEqual([]);
    await waitCompleted(flow, BATCH);
    for (const [id, history] of await histories(ids)) {
      expect({ id, activations: history.types.filter((type) => type === 'activate').length }).toEqual({
        id,
        activations: 1,
      });
    }
  }, 90_000);

  it('10 concurrent by-id calls for one execution: one activates, nine answer EXECUTION_NOT_WAITING', async () => {
    const flow = await createFlow('race-by-id');
    const [id] = await startWaiting(flow, 1);

    const answers = await Promise.all(Array.from({ length: 10 }, (_, index) => activate(flow, index, id)));

    const won = answers.filter((answer) => answer.status === 200);
    expect(won).toHaveLength(1);
    expect(won[0]).toMatchObject({ activation: 'activated', executionId: id });
    const refused = answers.filter((answer) => answer.status !== 200);
    expect(refused).toHaveLength(9);
    for (const answer of refused) expect(answer).toMatchObject({ status: 409, code: 'EXECUTION_NOT_WAITING' });

    await waitCompleted(flow, 1);
    expect(await settledDeliveries(flow, 1)).toHaveLength(1);
    const history = (await histories([id])).get(id)!;
    expect(history.types.filter((type) => type === 'activate')).toHaveLength(1);
    // Every refused attempt is in the execution's history too (SPEC §3).
    expect(history.types.filter((type) => type === 'activation_refused')).toHaveLength(9);
  }, 60_000);
});

/** Spreads the calls of each kind evenly through the sequence (deterministic, no Math.random). */
function interleave<T extends { kind: string }>(calls: T[]): T[] {
  const keyed = calls.map((call, index) => {
    const ofKind = calls.filter((other) => other.kind === call.kind);
    const position = ofKind.indexOf(call);
    return { call, key: (position + 0.5) / ofKind.length, index };
  });
  return keyed.sort((a, b) => a.key - b.key || a.index - b.index).map((entry) => entry.call);
}
