import { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
import { startTestApp, type TestApp } from './support/app.js';
import { serverAvailable } from './support/database.js';
import { seedTenant } from './support/fixtures.js';
import { activationPath, type FlowBody, FlowsClient } from './support/flows.js';
import { eventually } from './support/receiver.js';

// The failure test holds a lock from a second connection (the PGlite fallback serves one).
const hasServer = await serverAvailable();

interface Answer {
  status: number;
  code: string | null;
  activation: string | null;
  executionId: string | null;
  replayed: boolean;
}

/**
 * Plain `execution=any` calls (no condition, no Idempotency-Key) that arrive on one instance while
 * a transaction for the same step is running are served together by the next one (group commit).
 * What must not change: one execution per call, each with that call's own data; NO_WAITING_EXECUTION
 * for the calls left over, in the trigger's history; conditions, keys and schema refusals as for a
 * single call; and a database error fails only the calls of its group, committing nothing.
 */
describe('activation: concurrent `any` calls on one instance', () => {
  let t: TestApp;
  let flows: FlowsClient;

  beforeAll(async () => {
    t = await startTestApp({ env: { SCHEDULER_TICK_MS: '50', DATABASE_POOL_SIZE: '10' }, listen: true });
    flows = new FlowsClient(t, await seedTenant(t));
  });
  afterAll(() => t.close());

  const query = <T>(sql: string, params: unknown[] = []) => t.app.get(MikroORM).em.fork().execute<T[]>(sql, params);

  function approvalFlow(approve: object = {}): Promise<FlowBody> {
    return flows.create([
      { type: 'callback', name: 'Start' },
      { type: 'callback', name: 'Approve', ...approve },
    ]);
  }

  /** Starts `inputs.length` executions by API (trigger data = the input) and waits until all wait at Approve. */
  async function startWaiting(flow: FlowBody, inputs: unknown[]): Promise<string[]> {
    const ids = await Promise.all(inputs.map(async (input) => (await flows.start(flow.id, input)).id));
    await eventually(async () => (await waitingIds(flow)).length === ids.length);
    return ids;
  }

  async function waitingIds(flow: FlowBody): Promise<string[]> {
    const rows = await query<{ id: string }>(
      `select id from executions where flow_id = ? and status = 'waiting' and waiting_trigger_id = ?`,
      [flow.id, flow.steps[1].triggerId],
    );
    return rows.map((row) => row.id).sort();
  }

  /** One call over real HTTP (its own request, concurrent with the others). */
  async function activate(flow: FlowBody, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
    const response = await fetch(`${t.baseUrl}${activationPath(flow, 'Approve')}?execution=any`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    return {
      status: response.status,
      code: text ? JSON.parse(text).code : null,
      activation: response.headers.get('x-activation'),
      executionId: response.headers.get('x-execution-id'),
      replayed: response.headers.get('idempotent-replayed') === 'true',
    };
  }

  /** What each execution holds as its Approve step's data, and how often it was activated. */
  async function approvals(ids: string[]): Promise<Map<string, { data: unknown; activations: number }>> {
    const entries = await Promise.all(
      ids.map(async (id) => {
        const execution = await flows.get(id);
        const activations = execution.history.filter((event) => event.type === 'activate').length;
        return [id, { data: execution.context.steps.Approve?.data, activations }] as const;
      }),
    );
    return new Map(entries);
  }

  it('60 calls on 40 waiting: 40 resumed once each with the data of the call told its id, 20 NO_WAITING_EXECUTION', async () => {
    const flow = await approvalFlow();
    const ids = await startWaiting(
      flow,
      Array.from({ length: 40 }, (_, index) => ({ index })),
    );

    const answers = await Promise.all(Array.from({ length: 60 }, (_, caller) => activate(flow, { caller })));

    const won = answers.flatMap((answer, caller) => (answer.status === 200 ? [{ ...answer, caller }] : []));
    expect(won).toHaveLength(40);
    for (const answer of won) expect(answer.activation).toBe('activated');
    expect(won.map((answer) => answer.executionId).sort()).toEqual([...ids].sort());
    const lost = answers.filter((answer) => answer.status !== 200);
    expect(lost).toHaveLength(20);
    for (const answer of lost) expect(answer).toMatchObject({ status: 404, code: 'NO_WAITING_EXECUTION' });
    expect(await waitingIds(flow)).toEqual([]);

    const held = await approvals(ids);
    for (const answer of won)
      expect(held.get(answer.executionId!)).toEqual({ data: { caller: answer.caller }, activations: 1 });
    // The calls that reached no execution are the trigger's history, one refusal each.
    const refusals = await query<{ detail: unknown }>(
      `select detail from flow_events where trigger_id = ? and execution_id is null and type = 'activation_refused'`,
      [flow.steps[1].triggerId],
    );
    expect(refusals).toEqual(
      Array.from({ length: 20 }, () => ({ detail: { code: 'NO_WAITING_EXECUTION', execution: 'any' } })),
    );
    // Served together: the 40 activations were committed by fewer transactions than calls.
    const [{ transactions }] = await query<{ transactions: string }>(
      `select count(distinct xmin::text) as transactions from flow_events where flow_id = ? and type = 'activate'`,
      [flow.id],
    );
    expect(Number(transactions)).toBeLessThan(40);

    // A grouped resume leaves an execution as a single one does: compared with one resumed by id.
    const [single] = await startWaiting(flow, [{ index: 40 }]);
    await fetch(`${t.baseUrl}${activationPath(flow, 'Approve')}?execution=${single}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ caller: 'by id' }),
    });
    const shape = async (id: string) => {
      const execution = await flows.until(id, (candidate) => candidate.status === 'completed');
      const activate = execution.history.find((event) => event.type === 'activate')!;
      return {
        status: execution.status,
        types: execution.history.map((event) => event.type),
        activate: { step: activate.step, detail: { ...activate.detail, by: '…' } },
        approve: Object.keys(execution.context.steps.Approve).sort(),
        approvedAt: execution.context.steps.Approve.at === activate.at,
      };
    };
    expect(await shape(won[0].executionId!)).toEqual(await shape(single));
    expect((await shape(single)).activate).toEqual({
      step: 'Approve',
      detail: { from: 'waiting', to: 'running', by: '…' },
    });
  });

  it('plain calls, keyed calls, schema refusals and a conditional step at once: each answered as alone', async () => {
    const schema = { type: 'object', required: ['ok'] };
    const plainFlow = await approvalFlow({ schema });
    const plainIds = await startWaiting(
      plainFlow,
      Array.from({ length: 30 }, (_, index) => ({ index })),
    );
    const regionFlow = await approvalFlow({
      condition: { type: 'JQ', expressions: ['.execution.trigger.data.region == .data.region'] },
    });
    const regionIds = await startWaiting(
      regionFlow,
      ['eu', 'eu', 'eu', 'us', 'us'].map((region) => ({ region })),
    );

    type Call = { kind: 'plain' | 'keyed' | 'invalid' | 'region'; body: object; headers?: Record<string, string> };
    const calls: Call[] = [
      ...Array.from({ length: 15 }, (_, n) => ({ kind: 'plain' as const, body: { ok: true, n } })),
      ...Array.from({ length: 5 }, (_, n) => ({ kind: 'invalid' as const, body: { n } })),
      // Each key twice: one call resumes, its repeat replays that answer.
      ...[0, 1, 2, 3, 4, 0, 1, 2, 3, 4].map((key) => ({
        kind: 'keyed' as const,
        body: { ok: true, key },
        headers: { 'idempotency-key': `group-${key}` },
      })),
      ...Array.from({ length: 4 }, () => ({ kind: 'region' as const, body: { region: 'eu' } })),
    ];
    const order = calls.map((call, index) => ({ call, key: (index * 7) % calls.length })).sort((a, b) => a.key - b.key);
    const answers = await Promise.all(
      order.map(async ({ call }) => ({
        call,
        answer: await activate(call.kind === 'region' ? regionFlow : plainFlow, call.body, call.headers),
      })),
    );
    const of = (kind: Call['kind']) => answers.filter((entry) => entry.call.kind === kind);

    for (const { answer } of of('plain')) expect(answer).toMatchObject({ status: 200, activation: 'activated' });
    for (const { answer } of of('invalid')) expect(answer).toMatchObject({ status: 400, code: 'INVALID_PAYLOAD' });
    for (const key of [0, 1, 2, 3, 4]) {
      const pair = of('keyed').filter((entry) => (entry.call.body as { key: number }).key === key);
      expect(pair.map(({ answer }) => answer.status)).toEqual([200, 200]);
      expect(pair[0].answer.executionId).toBe(pair[1].answer.executionId);
      expect(pair.filter(({ answer }) => answer.replayed)).toHaveLength(1);
    }
    // 15 plain + 5 keys resumed 20 distinct executions, each once, with its caller's data; 10 still wait.
    const resumed = [...of('plain'), ...of('keyed').filter(({ answer }) => !answer.replayed)];
    expect(new Set(resumed.map(({ answer }) => answer.executionId)).size).toBe(20);
    expect((await waitingIds(plainFlow)).length).toBe(10);
    const held = await approvals(plainIds);
    for (const { call, answer } of resumed)
      expect(held.get(answer.executionId!)).toEqual({ data: call.body, activations: 1 });
    expect([...held.values()].filter((entry) => entry.activations === 0)).toHaveLength(10);

    // The condition is evaluated per execution: the three eu ones resumed, the us ones never. The
    // fourth eu call found none passing: ignored, or NO_WAITING_EXECUTION when the us ones were
    // still held by the others' tries (a tried execution stays locked until its caller commits).
    const regions = of('region').map(({ answer }) => answer.activation ?? answer.code);
    expect(regions.filter((outcome) => outcome === 'activated')).toHaveLength(3);
    expect(['ignored', 'NO_WAITING_EXECUTION']).toContain(regions.find((outcome) => outcome !== 'activated'));
    expect(
      of('region')
        .flatMap(({ answer }) => answer.executionId ?? [])
        .sort(),
    ).toEqual(regionIds.slice(0, 3).sort());
    expect(await waitingIds(regionFlow)).toEqual(regionIds.slice(3).sort());
  });

  it.runIf(hasServer)(
    'a database error fails the calls of its group only (503, nothing committed); other groups commit',
    async () => {
      const flow = await approvalFlow();
      const ids = await startWaiting(
        flow,
        Array.from({ length: 30 }, (_, index) => ({ index })),
      );
      const url = t.database.url!;
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      // Any resume carrying {"fail": true} is refused by the database as a deadlock victim would be.
      await admin.query(`
        create function fail_marked_resume() returns trigger language plpgsql as $$
        begin
          if new.context #>> '{steps,Approve,data,fail}' = 'true' then
            raise exception 'induced failure' using errcode = '40P01';
          end if;
          return new;
        end $$;
        create trigger fail_marked_resume before update on executions
          for each row execute function fail_marked_resume();`);
      const blocker = new pg.Client({ connectionString: url });
      await blocker.connect();
      try {
        // Hold the first group's statement open: its history insert waits for this lock.
        await blocker.query('begin');
        await blocker.query('lock table flow_events in share mode');
        const first = activate(flow, { n: 0 });
        await eventually(async () => {
          const waiting = await admin.query(
            `select 1 from pg_locks where relation = 'flow_events'::regclass and not granted`,
          );
          return waiting.rows.length > 0;
        });
        // These arrive while it runs, so they queue for the next group, the failing call among them.
        const rest = [
          ...Array.from({ length: 9 }, (_, index) => activate(flow, { n: index + 1 })),
          activate(flow, { n: 10, fail: true }),
        ];
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        await blocker.query('commit');

        expect(await first).toMatchObject({ status: 200, activation: 'activated' });
        const answers = await Promise.all(rest);
        expect(answers.at(-1)).toMatchObject({ status: 503, code: 'UNAVAILABLE' });
        const failed = answers.filter((answer) => answer.status === 503);
        const won = answers.filter((answer) => answer.status === 200);
        expect(failed.length + won.length).toBe(answers.length);
        // The failing call's group partners failed with it, not only the call itself.
        expect(failed.length).toBeGreaterThan(1);
        // Nothing of the failed group was committed: only the answered calls resumed an execution.
        const activated = [(await first).executionId, ...won.map((answer) => answer.executionId)];
        expect((await waitingIds(flow)).length).toBe(30 - activated.length);
        const [{ activations }] = await query<{ activations: string }>(
          `select count(*) as activations from flow_events where flow_id = ? and type = 'activate'`,
          [flow.id],
        );
        expect(Number(activations)).toBe(activated.length);

        // Those calls can simply be retried (the marked one too, once the database lets it through).
        await admin.query('drop trigger fail_marked_resume on executions');
        const retried = await Promise.all(
          answers.flatMap((answer, index) => (answer.status === 503 ? [activate(flow, { retry: index })] : [])),
        );
        for (const answer of retried) expect(answer).toMatchObject({ status: 200, activation: 'activated' });
        expect((await waitingIds(flow)).length).toBe(30 - activated.length - retried.length);
        const held = await approvals(ids);
        expect([...held.values()].every((entry) => entry.activations <= 1)).toBe(true);
      } finally {
        await blocker.query('rollback').catch(() => undefined);
        await blocker.end();
        await admin.query('drop trigger if exists fail_marked_resume on executions');
        await admin.query('drop function if exists fail_marked_resume()');
        await admin.end();
      }
    },
  );
});
