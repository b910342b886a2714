import { benchRow, type BenchRow } from '../../support/scenario.js';
import { percentile } from '../../support/stats.js';
import type { SoakFixture, SoakRun } from '../soak.js';

/** The first minute warms up (JIT, pools, caches); "first" in the verdict is the minute after it. */
const WARMUP_MINUTES = 1;
/** Flat latency: the last minute's p99 at most this many times the first's. */
const P99_FACTOR = 1.5;
/**
 * Flat memory: the RSS floor of the run's second half at most this much above its first half's
 * (warm-up left out), a floor being the median of the minutes' lowest 5-s samples. A leak raises
 * the floor; V8's collection cycles, which swing RSS by 100–200 MB within a minute or two under
 * this load, move the peaks, and the median keeps one unusually deep trough from deciding.
 */
const RSS_FLOOR_LIMIT_MB = 25;

/** The open-loop calls intended within one minute of the run. */
export interface Minute {
  sent: number;
  answered: number;
  failed: number;
  latenciesMs: number[];
}

export interface Sample {
  at: number;
  rssMb: number;
  /** The service's V8 heap in use (live objects and garbage not yet collected), from /metrics. */
  heapUsedMb: number;
  serviceCpuMs: number;
  /** Since the run started. */
  databaseCpuMs: number;
  loadAverage: number;
  /** Read at whole minutes of the run only. */
  minute?: { databaseMb: number; waiting: number; queued: number };
}

interface MinuteFigures {
  sent: number;
  answered: number;
  failed: number;
  p50Ms: number;
  p99Ms: number;
  fireLagP99Ms: number;
  cronReceiptP99Ms: number;
  stepReceiptP99Ms: number;
  serviceCpuPercent: number;
  databaseCpuPercent: number;
  rss: { low: number; high: number };
  heapUsed: { low: number; high: number };
  databaseMb: number;
  waiting: number;
  queued: number;
  loadAverage: number;
}

/** The per-minute table, start against end, and the verdict with its rules, as markdown and rows. */
export async function soakReport(fixture: SoakFixture, run: SoakRun): Promise<{ markdown: string; rows: BenchRow[] }> {
  const figures = await perMinute(fixture, run);
  const boundaries = run.samples.filter((sample) => sample.minute);
  const [start, end] = [boundaries[0], boundaries.at(-1)!];
  const minutes = figures.length;
  const first = figures[Math.min(WARMUP_MINUTES, minutes - 1)];
  const last = figures[minutes - 1];
  const middle = WARMUP_MINUTES + Math.floor((minutes - WARMUP_MINUTES) / 2);
  const floors = (pick: (minute: MinuteFigures) => number) => [
    percentile(figures.slice(WARMUP_MINUTES, middle).map(pick), 0.5),
    percentile(figures.slice(middle).map(pick), 0.5),
  ];
  const rssFloors = floors((minute) => minute.rss.low);
  const heapFloors = floors((minute) => minute.heapUsed.low);
  const databaseGrowth = (end.minute!.databaseMb - start.minute!.databaseMb) / minutes;

  const comparable = minutes >= WARMUP_MINUTES + 2;
  const latencyFlat = last.p99Ms <= P99_FACTOR * first.p99Ms;
  const memoryFlat = rssFloors[1] - rssFloors[0] <= RSS_FLOOR_LIMIT_MB;
  const firstMinute = `minute ${WARMUP_MINUTES + 1}`;
  const verdict = comparable
    ? `**${latencyFlat && memoryFlat ? 'flat' : 'not flat'}**. Activation p99 ${latencyFlat ? 'flat' : 'NOT flat'}: ` +
      `minute ${minutes} ${last.p99Ms.toFixed(1)} ms against ${firstMinute}'s ${first.p99Ms.toFixed(1)} ms (rule: ≤ ` +
      `${P99_FACTOR}×, minute 1 is warm-up). RSS ${memoryFlat ? 'flat' : 'NOT flat'}: floor ` +
      `${rssFloors[1].toFixed(0)} MB in minutes ${middle + 1}–${minutes} against ${rssFloors[0].toFixed(0)} MB in ` +
      `minutes ${WARMUP_MINUTES + 1}–${middle} (floor: median of the minutes' lowest 5-s samples; rule: at most ` +
      `${RSS_FLOOR_LIMIT_MB} MB higher; heap used ${heapFloors[0].toFixed(0)} → ${heapFloors[1].toFixed(0)} MB).`
    : `none: it needs at least ${WARMUP_MINUTES + 2} minutes (warm-up, first, last).`;

  const versus = `minute ${minutes} vs ${firstMinute}`;
  const halves = 'floor, second half vs first';
  const rows = [
    benchRow('soak', 'service RSS, end vs start', 'MB', end.rssMb, start.rssMb),
    benchRow('soak', `service RSS, ${halves} (flat: ≤ +${RSS_FLOOR_LIMIT_MB} MB)`, 'MB', rssFloors[1], rssFloors[0]),
    benchRow('soak', `service heap used, ${halves}`, 'MB', heapFloors[1], heapFloors[0]),
    benchRow('soak', 'database size, end vs start', 'MB', end.minute!.databaseMb, start.minute!.databaseMb),
    benchRow('soak', 'database growth', 'MB/min', databaseGrowth),
    benchRow('soak', `activation p50, ${versus}`, 'ms', last.p50Ms, first.p50Ms),
    benchRow('soak', `activation p99, ${versus} (flat: ≤ ${P99_FACTOR}×)`, 'ms', last.p99Ms, first.p99Ms),
    benchRow('soak', `cron fire lag p99, ${versus}`, 'ms', last.fireLagP99Ms, first.fireLagP99Ms),
    benchRow('soak', `cron receipt lag p99, ${versus}`, 'ms', last.cronReceiptP99Ms, first.cronReceiptP99Ms),
    benchRow('soak', `webhook step receipt lag p99, ${versus}`, 'ms', last.stepReceiptP99Ms, first.stepReceiptP99Ms),
  ];
  const markdown = [
    `soak, per minute (${run.activationRate} activation calls/s offered open-loop, ${run.cronTriggers} ` +
      `every-second cron triggers):`,
    '',
    table(figures),
    '',
    `Start → end: RSS ${start.rssMb.toFixed(0)} → ${end.rssMb.toFixed(0)} MB, heap used ` +
      `${start.heapUsedMb.toFixed(0)} → ${end.heapUsedMb.toFixed(0)} MB, database ` +
      `${start.minute!.databaseMb.toFixed(0)} → ${end.minute!.databaseMb.toFixed(0)} MB ` +
      `(${databaseGrowth.toFixed(1)} MB/min), activation p99 ${first.p99Ms.toFixed(1)} → ${last.p99Ms.toFixed(1)} ms.`,
    '',
    `Growth by table over the run: ${run.tableGrowthMb
      .filter(({ mb }) => mb >= 0.1)
      .map(({ table, mb }) => `${table} +${mb.toFixed(1)} MB`)
      .join(', ')}.`,
    '',
    `Verdict: ${verdict}`,
  ].join('\n');
  return { markdown, rows };
}

async function perMinute(fixture: SoakFixture, run: SoakRun): Promise<MinuteFigures[]> {
  const { rows: fireLags } = await fixture.db.query<{ minute: number; p99: number }>(
    `select floor(extract(epoch from r.scheduled_for - $1::timestamptz) / 60)::int as minute,
            percentile_cont(0.99) within group (order by extract(epoch from r.fired_at - r.scheduled_for) * 1000) as p99
       from trigger_runs r join cron_triggers t on t.id = r.trigger_id
      where t.run_key = 'soak.cron' and r.scheduled_for >= $1 and r.scheduled_for < $2
      group by 1`,
    [new Date(run.startAt), new Date(run.endAt)],
  );
  const cronReceipts = await receiptMinutes(fixture, 'soak.cron');
  const stepReceipts = await receiptMinutes(fixture, 'soak');
  const boundaries = run.samples.filter((sample) => sample.minute);
  const cpuPercent = (from: number, to: number) => ((to - from) / 60_000) * 100;
  return run.minutes.map((minute, index) => {
    const [before, after] = [boundaries[index], boundaries[index + 1]];
    const within = run.samples.filter((sample) => sample.at > before.at && sample.at <= after.at);
    const range = (pick: (sample: Sample) => number) => ({
      low: Math.min(...within.map(pick)),
      high: Math.max(...within.map(pick)),
    });
    return {
      sent: minute.sent,
      answered: minute.answered,
      failed: minute.failed,
      p50Ms: percentile(minute.latenciesMs, 0.5),
      p99Ms: percentile(minute.latenciesMs, 0.99),
      fireLagP99Ms: fireLags.find((row) => row.minute === index)?.p99 ?? NaN,
      cronReceiptP99Ms: cronReceipts.get(index) ?? NaN,
      stepReceiptP99Ms: stepReceipts.get(index) ?? NaN,
      serviceCpuPercent: cpuPercent(before.serviceCpuMs, after.serviceCpuMs),
      databaseCpuPercent: cpuPercent(before.databaseCpuMs, after.databaseCpuMs),
      rss: range((sample) => sample.rssMb),
      heapUsed: range((sample) => sample.heapUsedMb),
      databaseMb: after.minute!.databaseMb,
      waiting: after.minute!.waiting,
      queued: after.minute!.queued,
      loadAverage: after.loadAverage,
    };
  });
}

/** p99 receipt lag by minute of the run, from the receiver. */
async function receiptMinutes(fixture: SoakFixture, group: string): Promise<Map<number, number>> {
  const response = await fetch(`${fixture.receiver.baseUrl}/_minutes?group=${encodeURIComponent(group)}`);
  const { minutes } = (await response.json()) as { minutes: { minute: number; p99: number }[] };
  return new Map(minutes.map((minute) => [minute.minute, minute.p99]));
}

function lowHigh({ low, high }: { low: number; high: number }): string {
  return `${low.toFixed(0)}–${high.toFixed(0)} MB`;
}

function table(figures: MinuteFigures[]): string {
  const ms = (value: number) => (Number.isNaN(value) ? 'n/a' : value >= 100 ? value.toFixed(0) : value.toFixed(1));
  const lines = [
    '| minute | calls sent | answered | failed | activation p50 | activation p99 | fire lag p99 | cron receipt p99 | ' +
      'step receipt p99 | service CPU | database CPU | RSS low–high | heap used low–high | database | waiting | queued | ' +
      'load avg |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  figures.forEach((minute, index) => {
    lines.push(
      `| ${index + 1} | ${minute.sent} | ${minute.answered} | ${minute.failed} | ${ms(minute.p50Ms)} ms | ` +
        `${ms(minute.p99Ms)} ms | ${ms(minute.fireLagP99Ms)} ms | ${ms(minute.cronReceiptP99Ms)} ms | ` +
        `${ms(minute.stepReceiptP99Ms)} ms | ${minute.serviceCpuPercent.toFixed(0)} % | ` +
        `${minute.databaseCpuPercent.toFixed(0)} % | ${lowHigh(minute.rss)} | ${lowHigh(minute.heapUsed)} | ` +
        `${minute.databaseMb.toFixed(0)} MB | ` +
        `${minute.waiting} | ${minute.queued} | ${minute.loadAverage.toFixed(1)} |`,
    );
  });
  return lines.join('\n');
}
