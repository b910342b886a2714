import { count } from '../../support/database.js';
import type { BenchContext } from '../../support/scenario.js';
import type { SoakFixture, SoakRun } from '../soak.js';

/**
 * What makes the figures describe the load they claim to (checked once everything has drained):
 * every call was answered 200 and did what it says, every delivery to a healthy backend arrived,
 * every delivery to the failing one was tried `retryAttempts` times and died, and every cron slot of
 * the window fired exactly once with one delivery. Throws with the list of what failed.
 */
export async function checkSoak(
  context: BenchContext,
  fixture: SoakFixture,
  run: SoakRun,
  retryAttempts: number,
): Promise<void> {
  const problems = [
    ...(await checkActivations(fixture, run)),
    ...(await checkDeliveries(context, fixture, retryAttempts)),
    ...(await checkCron(fixture, run)),
  ];
  if (problems.length > 0) throw new Error(`soak: the figures are void:\n  ${problems.join('\n  ')}`);
  context.log('soak: checks passed (calls, executions, deliveries, cron slots)');
}

async function checkActivations(fixture: SoakFixture, run: SoakRun): Promise<string[]> {
  const { db, flowId } = fixture;
  const problems: string[] = [];
  const sent = run.minutes.reduce((sum, minute) => sum + minute.sent, 0);
  const failed = run.minutes.reduce((sum, minute) => sum + minute.failed, 0);
  if (failed > 0) problems.push(`${failed} of ${sent} calls were not answered 200`);
  // Flow starts: the executions created during the run are exactly the ids the answers named.
  const { rows: created } = await db.query<{ id: string }>(
    `select id from executions where flow_id = $1 and created_at >= $2`,
    [flowId, new Date(run.startAt)],
  );
  const unknown = created.filter((row) => !run.startedIds.has(row.id)).length;
  if (created.length !== run.startedIds.size || unknown > 0) {
    problems.push(`${run.startedIds.size} starts answered, ${created.length} executions created (${unknown} unnamed)`);
  }
  // execution=any: each answer resumed a different execution, and each of those completed.
  if (run.resumedIds.size !== run.resumedAnswers) {
    problems.push(`${run.resumedAnswers} any-calls answered, but only ${run.resumedIds.size} distinct executions`);
  }
  const completed = await count(
    db,
    `select count(*) from executions where id = any($1::uuid[]) and status = 'completed'`,
    [[...run.resumedIds]],
  );
  if (completed !== run.resumedIds.size) {
    problems.push(`${run.resumedIds.size} executions resumed, ${completed} of them completed`);
  }
  const unfinished = await count(
    db,
    `select count(*) from executions where flow_id = $1 and status not in ('waiting', 'completed')`,
    [flowId],
  );
  if (unfinished > 0) problems.push(`${unfinished} executions failed, were cancelled or still run`);
  return problems;
}

async function checkDeliveries(context: BenchContext, fixture: SoakFixture, retryAttempts: number): Promise<string[]> {
  const problems: string[] = [];
  const failingId = fixture.backends[fixture.failingBackend].id;
  const { rows } = await fixture.db.query<{ webhook_id: string; backend_id: string; status: string; attempts: number }>(
    `select webhook_id, backend_id, status, attempts from deliveries`,
  );
  const response = await fetch(`${fixture.receiver.baseUrl}/_ids`);
  const received = (await response.json()) as {
    healthy: string[];
    failingAttempts: Record<string, number>;
    arrivedTwice: number;
    unreadable: number;
  };
  const healthyReceived = new Set(received.healthy);
  const healthy = rows.filter((row) => row.backend_id !== failingId);
  const failing = rows.filter((row) => row.backend_id === failingId);

  const notSucceeded = healthy.filter((row) => row.status !== 'SUCCEEDED').length;
  const missing = healthy.filter((row) => !healthyReceived.has(row.webhook_id)).length;
  if (notSucceeded > 0) problems.push(`${notSucceeded} deliveries to healthy backends did not succeed`);
  if (missing > 0) problems.push(`${missing} deliveries to healthy backends never arrived`);
  if (healthyReceived.size !== healthy.length) {
    problems.push(`${healthyReceived.size} distinct messages arrived for ${healthy.length} deliveries`);
  }
  if (received.unreadable > 0) problems.push(`${received.unreadable} messages without a group or a time`);

  const notDead = failing.filter((row) => row.status !== 'DEAD' || row.attempts !== retryAttempts).length;
  const wrongTries = failing.filter((row) => received.failingAttempts[row.webhook_id] !== retryAttempts).length;
  if (notDead > 0)
    problems.push(`${notDead} deliveries to the failing backend are not DEAD after ${retryAttempts} attempts`);
  if (wrongTries > 0)
    problems.push(`${wrongTries} deliveries to the failing backend were not tried ${retryAttempts} times`);

  const retried = healthy.filter((row) => row.attempts > 1).length;
  context.log(
    `soak: ${healthy.length} deliveries to healthy backends (${received.arrivedTwice} arrived twice, ${retried} ` +
      `needed a retry), ${failing.length} to the failing one (each tried ${retryAttempts} times, then DEAD)`,
  );
  return problems;
}

async function checkCron(fixture: SoakFixture, run: SoakRun): Promise<string[]> {
  const { rows } = await fixture.db.query<{ runs: string; slots: string; delivered: string; triggers: string }>(
    `select count(*) as runs,
            count(distinct (r.trigger_id, r.scheduled_for)) as slots,
            count(*) filter (where (select count(*) from deliveries d where d.origin_id = r.id) = 1) as delivered,
            (select count(*) from cron_triggers where run_key = 'soak.cron') as triggers
       from trigger_runs r join cron_triggers t on t.id = r.trigger_id
      where t.run_key = 'soak.cron' and r.scheduled_for >= $1 and r.scheduled_for < $2`,
    [new Date(run.startAt), new Date(run.endAt)],
  );
  const expected = Number(rows[0].triggers) * ((run.endAt - run.startAt) / 1000);
  const [runs, slots, delivered] = [rows[0].runs, rows[0].slots, rows[0].delivered].map(Number);
  const problems: string[] = [];
  if (runs !== expected) problems.push(`${runs} cron runs in the window for ${expected} slots`);
  if (slots !== runs) problems.push(`${runs - slots} cron slots fired more than once`);
  if (delivered !== runs) problems.push(`${runs - delivered} cron runs without exactly one delivery`);
  return problems;
}
