import { call, registerBackends, seedTenant } from '../support/api.js';
import { createBenchDatabase } from '../support/database.js';
import { type LoadResult, measure } from '../support/load.js';
import { startServer } from '../support/processes.js';
import { type BenchContext, benchRow, type BenchRow, type Scenario } from '../support/scenario.js';
import { serviceEnv, startService } from '../support/service.js';

const BACKENDS = 20;
const PATH = '/api/machine/backends';

/**
 * The cheapest authenticated read: bearer-token check plus one indexed list query, next to bare
 * Fastify serving the same JSON, so it shows what auth, Nest, the ORM and the database cost.
 */
export const authList: Scenario = {
  name: 'auth-list',
  description: `GET ${PATH} (${BACKENDS} backends) with a machine-user token`,
  async run(context: BenchContext): Promise<BenchRow[]> {
    const load = { connections: context.connections, durationSeconds: context.durationSeconds };
    const { service, listed } = await measureService(context, load);
    context.log('auth-list: measuring the bare Fastify baseline');
    const baselineServer = await startServer(
      'bench/baseline-server.js',
      { BASELINE_PATH: PATH, BASELINE_BODY: JSON.stringify(listed) },
      PATH,
    );
    let baseline: LoadResult;
    try {
      baseline = await measure(baselineServer, PATH, load);
    } finally {
      await baselineServer.stop();
    }
    for (const [what, result] of [
      ['service', service],
      ['baseline', baseline],
    ] as const) {
      if (result.failures > 0) throw new Error(`${what}: ${result.failures} failed requests; the figures are void`);
    }
    const row = (figure: string, unit: string, pick: (result: LoadResult) => number | null) =>
      benchRow('auth-list', `${PATH}: ${figure}`, unit, pick(service), pick(baseline));
    return [
      row('throughput', 'req/s', (result) => result.requestsPerSecond),
      row('p99 latency', 'ms', (result) => result.p99Ms),
      row('server CPU per request', 'ms', (result) => result.serverCpuMsPerRequest),
    ];
  },
};

async function measureService(
  context: BenchContext,
  load: { connections: number; durationSeconds: number },
): Promise<{ service: LoadResult; listed: unknown }> {
  const database = await createBenchDatabase(context.databaseServerUrl);
  try {
    const env = serviceEnv(database.url);
    const app = await startService(env);
    try {
      const token = await seed(app.baseUrl, env.ADMIN_TOKEN);
      const listed = await call(app.baseUrl, 'GET', PATH, token);
      if (listed.items?.length !== BACKENDS)
        throw new Error(`expected ${BACKENDS} backends, got ${JSON.stringify(listed)}`);
      context.log(`auth-list: measuring ${PATH} on the service`);
      const service = await measure(app, PATH, { ...load, headers: { authorization: `Bearer ${token}` } });
      return { service, listed };
    } finally {
      await app.stop();
    }
  } finally {
    await database.drop();
  }
}

/** A tenant, a backend machine user and its backends, through the public API; returns the user's token. */
async function seed(baseUrl: string, adminToken: string): Promise<string> {
  const { machineToken } = await seedTenant(baseUrl, adminToken, ['backend']);
  await registerBackends(baseUrl, machineToken, BACKENDS, (index) => ({
    name: `backend-${index}`,
    callbackUrl: `http://127.0.0.1:9/backend-${index}`,
    description: 'benchmark fixture',
    runKeys: ['bench.nightly'],
  }));
  return machineToken;
}
