import { cpus } from 'node:os';
import { SCENARIOS } from './scenarios/index.js';
import type { BenchContext, BenchRow } from './support/scenario.js';

/**
 * `npm run bench [-- <scenario>]`: runs one scenario or all of them against the built service and
 * prints a markdown table for docs/PERFORMANCE.md. BENCH_DURATION (seconds) and BENCH_CONNECTIONS
 * override the load; TEST_DATABASE_URL names the PostgreSQL server to create a scratch database on;
 * BENCH_CPU_PROFILE_DIR makes every server process write a CPU profile there.
 */
async function main(): Promise<void> {
  const wanted = process.argv[2];
  const scenarios = wanted ? SCENARIOS.filter((scenario) => scenario.name === wanted) : SCENARIOS;
  if (scenarios.length === 0) {
    console.error(`unknown scenario "${wanted}"; known: ${SCENARIOS.map((scenario) => scenario.name).join(', ')}`);
    process.exit(2);
  }
  const reports: string[] = [];
  const context: BenchContext = {
    databaseServerUrl: process.env.TEST_DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres',
    durationSeconds: Number(process.env.BENCH_DURATION ?? 10),
    connections: Number(process.env.BENCH_CONNECTIONS ?? 32),
    log: (message) => console.error(`[bench] ${message}`),
    report: (markdown) => reports.push(markdown),
  };
  const rows: BenchRow[] = [];
  for (const scenario of scenarios) {
    context.log(`${scenario.name}: ${scenario.description}`);
    rows.push(...(await scenario.run(context)));
  }
  console.log(
    `\n${context.connections} connections, ${context.durationSeconds} s per measurement, ` +
      `Node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? 'unknown CPU'})\n`,
  );
  console.log(table(rows));
  for (const markdown of reports) console.log(`\n${markdown}`);
}

function table(rows: BenchRow[]): string {
  const lines = ['| scenario | figure | value | baseline | ratio |', '|---|---|---|---|---|'];
  for (const row of rows) {
    const ratio = row.baseline ? `${(row.value / row.baseline).toFixed(2)}×` : '—';
    const baseline = row.baseline === null ? '—' : `${format(row.baseline)} ${row.unit}`;
    lines.push(`| ${row.scenario} | ${row.figure} | ${format(row.value)} ${row.unit} | ${baseline} | ${ratio} |`);
  }
  return lines.join('\n');
}

function format(value: number): string {
  if (Number.isNaN(value)) return 'n/a';
  if (value >= 100) return Math.round(value).toLocaleString('en-US');
  return value >= 1 ? value.toFixed(1) : value.toPrecision(2);
}

await main();
