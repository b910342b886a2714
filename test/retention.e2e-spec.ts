import { MikroORM } from '@mikro-orm/postgresql';
import { RetentionJob } from '../src/maintenance/retention.job.js';
import { startTestApp, type TestApp } from './support/app.js';
import { bearer, seedTenant, type SeededTenant } from './support/fixtures.js';
import { eventually, TestReceiver } from './support/receiver.js';

describe('retention', () => {
  let t: TestApp;
  let receiver: TestReceiver;
  let seed: SeededTenant;

  beforeAll(async () => {
    receiver = await TestReceiver.start();
    t = await startTestApp({
      env: {
        ALLOW_HTTP_CALLBACKS: 'true',
        CALLBACK_ALLOWED_HOSTS: '127.0.0.1',
        DELIVERY_POLL_MS: '50',
        SCHEDULER_TICK_MS: '50',
        RETENTION_DAYS: '30',
      },
    });
    seed = await seedTenant(t);
  });
  afterAll(async () => {
    await t.close();
    await receiver.close();
  });

  const sql = <T>(query: string, params: unknown[] = []) => t.app.get(MikroORM).em.fork().execute<T[]>(query, params);

  it('purges old finished work and never waiting executions or pending deliveries', async () => {
    const operator = bearer(seed.operatorUser.token);
    const backend = (
      await t.http
        .post('/api/machine/register-backend')
        .set(bearer(seed.backendUser.token))
        .send({ name: 'kept', callbackUrl: receiver.url(), runKeys: ['nightly'] })
        .expect(201)
    ).body;
    const trigger = (
      await t.http
        .post(`/api/applications/${seed.application.id}/triggers`)
        .set(operator)
        .send({ name: 'Nightly', cronExpression: '0 3 * * *', runKey: 'nightly' })
        .expect(201)
    ).body;
    for (let i = 0; i < 3; i++) await t.http.post(`/api/triggers/${trigger.id}/run`).set(operator).expect(202);
    await eventually(async () => {
      const [row] = await sql<{ n: string }>(`select count(*) as n from deliveries where status = 'SUCCEEDED'`);
      return Number(row.n) === 3;
    });

    const flow = (
      await t.http
        .post(`/api/applications/${seed.application.id}/flows`)
        .set(operator)
        .send({
          name: 'Short',
          steps: [
            { type: 'callback', name: 'Go' },
            { type: 'callback', name: 'Wait here' },
          ],
        })
        .expect(201)
    ).body;
    const finished = (await t.http.post(`/api/flows/${flow.id}/executions`).set(operator).send({}).expect(201)).body;
    const waiting = (await t.http.post(`/api/flows/${flow.id}/executions`).set(operator).send({}).expect(201)).body;
    await eventually(async () => {
      const response = await t.http.get(`/api/executions/${finished.id}`).set(operator);
      return response.body.status === 'waiting';
    });
    await t.http.post(`/api/executions/${finished.id}/cancel`).set(operator).expect(200);

    // A delivery parked on a disabled backend stays however old it is.
    const direct = (
      await t.http
        .post(`/api/applications/${seed.application.id}/triggers`)
        .set(operator)
        .send({ name: 'Direct', cronExpression: '0 3 * * *', runKey: 'direct', backendId: backend.id })
        .expect(201)
    ).body;
    await t.http
      .patch(`/api/machine/backends/${backend.id}`)
      .set(bearer(seed.backendUser.token))
      .send({ enabled: false });
    await t.http.post(`/api/triggers/${direct.id}/run`).set(operator).expect(202);

    const old = `now() - interval '40 days'`;
    await sql(
      `update deliveries set created_at = ${old}, finished_at = case when finished_at is null then null else ${old} end`,
    );
    await sql(`update trigger_runs set created_at = ${old}`);
    await sql(
      `update executions set created_at = ${old}, finished_at = case when finished_at is null then null else ${old} end`,
    );

    const totals = await t.app.get(RetentionJob).runIfDue(true);
    expect(totals).toMatchObject({ deliveries: 3, trigger_runs: 4, executions: 1 });

    const left = await sql<{ status: string }>(`select status from deliveries`);
    expect(left.map((row) => row.status)).toEqual(['PARKED']);
    await t.http.get(`/api/executions/${waiting.id}`).set(operator).expect(200);
    await t.http.get(`/api/executions/${finished.id}`).set(operator).expect(404);
    const [attempts] = await sql<{ n: string }>(`select count(*) as n from delivery_attempts`);
    expect(Number(attempts.n)).toBe(0);

    // Another run within the hour finds the lease's last run too recent.
    expect(await t.app.get(RetentionJob).runIfDue()).toBeNull();
    const metrics = await t.http.get('/metrics').expect(200);
    expect(metrics.text).toMatch(/switchyard_retention_purged_total\{table="deliveries"\} 3/);
  });
});
