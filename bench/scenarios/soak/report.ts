import { benchRow, type BenchRow } from '../../support/scenario.js';
import { percentile } from '../../support/stats.js';
import type { SoakFixture, SoakRun } from '../soak.js';

/**
 * The first minute warms up (JIT, pools, caches, V8 sizing its heap) and is left out; the verdict
 * compares the thirds of the minutes after it (for 10 minutes: 2–4, 5–7 and 8–10).
 */
const WARMUP_MINUTES = 1;
/**
 * Flat latency: the median of the minutes' p99 in the last third at most this many times the
 * first third's, or at most LATENCY_SLACK_MS above it (a p99 of a few tens of ms moves by that
 * much with one autovacuum pass), for activations and for cron fire lag alike.
 */
const P99_FACTOR = 1.5;
const LATENCY_SLACK_MS = 25;
/**
 * No leak: the heap still live after V8's full collections (from --trace-gc), median of the last
 * third, at most LIVE_HEAP_LIMIT above the first third's (the larger of the MB and the share). The
 * heap in use at a random moment swings by 100 MB and more with garbage not yet collected; what
 * survives a full collection only grows when something keeps memory alive.
 */
const LIVE_HEAP_LIMIT = { mb: 10, share: 0.1 };
/**
 * RSS bounded: its highest 5-s sample in the last third at most RSS_PEAK_LIMIT_MB above the highest
 * of the minutes before it (warm-up left out). V8 lets the heap grow to a limit it sets from what
 * survived the last full collection, then collects, so with a flat live heap the peaks stay level;
 * a leak, in the heap or outside it (buffers, native memory), raises them third after third. The
 * troughs say little: how many pages V8 and malloc hand back after a collection varies from one
 * run to the next by 50 MB and more with the same live heap.
 */
const RSS_PEAK_LIMIT_MB = 25;

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
  /** Heap live after each full collection within the minute (none in a quiet minute). */
  liveHeapMb: number[];
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
  const databaseGrowth = (end.minute!.databaseMb - start.minute!.databaseMb) / minutes;
  const rows = [
    benchRow('soak', 'service RSS, end vs start', 'MB', end.rssMb, start.rssMb),
    benchRow('soak', 'database size, end vs start', 'MB', end.minute!.databaseMb, start.minute!.databaseMb),
    benchRow('soak', 'database growth', 'MB/min', databaseGrowth),
  ];
  const verdict = judge(figures, rows);

  const markdown = [
    `soak, per minute (${run.activationRate} activation calls/s offered open-loop, ${run.cronTriggers} ` +
      `every-second cron triggers):`,
    '',
    table(figures),
    '',
    `Start → end: RSS ${start.rssMb.toFixed(0)} → ${end.rssMb.toFixed(0)} MB, heap used ` +
      `${start.heapUsedMb.toFixed(0)} → ${end.heapUsedMb.toFixed(0)} MB, database ` +
      `${start.minute!.databaseMb.toFixed(0)} → ${end.minute!.databaseMb.toFixed(0)} MB ` +
      `(${databaseGrowth.toFixed(1)} MB/min).`,
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

/**
 * The verdict on the minutes after warm-up, cut into thirds, with its rules spelled out; adds the
 * figures it compared to `rows`.
 */
function judge(figures: MinuteFigures[], rows: BenchRow[]): string {
  const measured = figures.slice(WARMUP_MINUTES);
  const third = Math.floor(measured.length / 3);
  const span = (part: MinuteFigures[]) => {
    const [from, to] = [figures.indexOf(part[0]) + 1, figures.indexOf(part.at(-1)!) + 1];
    return from === to ? `minute ${from}` : `minutes ${from}–${to}`;
  };
  const median = (part: MinuteFigures[], pick: (minute: MinuteFigures) => number) =>
    percentile(
      part.map(pick).filter((value) => !Number.isNaN(value)),
      0.5,
    );

  if (third === 0) return `none: it needs at least ${WARMUP_MINUTES + 3} minutes (warm-up and three thirds).`;
  const [first, middle, last] = [measured.slice(0, third), measured.slice(third, -third), measured.slice(-third)];
  const versus = `${span(last)} vs ${span(first)}`;

  const latency = (name: string, pick: (minute: MinuteFigures) => number) => {
    const [before, after] = [median(first, pick), median(last, pick)];
    const limit = Math.max(P99_FACTOR * before, before + LATENCY_SLACK_MS);
    rows.push(benchRow('soak', `${name} p99, median of the minutes, ${versus}`, 'ms', after, before));
    const flat = after <= limit;
    return { flat, text: `${name} p99 ${flat ? 'flat' : 'NOT flat'} (${before.toFixed(1)} → ${after.toFixed(1)} ms)` };
  };
  const activation = latency('activation', (minute) => minute.p99Ms);
  const fireLag = latency('cron fire lag', (minute) => minute.fireLagP99Ms);

  const liveHeap = (part: MinuteFigures[]) =>
    percentile(
      part.flatMap((minute) => minute.liveHeapMb),
      0.5,
    );
  const [liveBefore, liveAfter] = [liveHeap(first), liveHeap(last)];
  const liveLimit = liveBefore + Math.max(LIVE_HEAP_LIMIT.mb, LIVE_HEAP_LIMIT.share * liveBefore);
  const noLeak = !Number.isNaN(liveAfter) && liveAfter <= liveLimit;
  rows.push(benchRow('soak', `service heap live after full GCs, median, ${versus}`, 'MB', liveAfter, liveBefore));

  const peak = (part: MinuteFigures[]) => Math.max(...part.map((minute) => minute.rss.high));
  const [rssBefore, rssLast] = [peak([...first, ...middle]), peak(last)];
  const rssBounded = rssLast - rssBefore <= RSS_PEAK_LIMIT_MB;
  const before = `minutes ${WARMUP_MINUTES + 1}–${figures.indexOf(middle.at(-1)!) + 1}`;
  rows.push(benchRow('soak', `service RSS peak, ${span(last)} vs ${before}`, 'MB', rssLast, rssBefore));

  const flat = activation.flat && fireLag.flat && noLeak && rssBounded;
  return (
    `**${flat ? 'flat' : 'not flat'}**. ${activation.text}, ${fireLag.text}: median of the minutes' p99, ${versus} ` +
    `(rule: at most ${P99_FACTOR}× or +${LATENCY_SLACK_MS} ms; minute 1 is warm-up). ` +
    `Heap ${noLeak ? 'not leaking' : Number.isNaN(liveAfter) ? 'NOT measured (no full GC)' : 'LEAKING'}: live after ` +
    `full GCs ${liveBefore.toFixed(0)} → ${liveAfter.toFixed(0)} MB (rule: at most +${LIVE_HEAP_LIMIT.mb} MB or ` +
    `+${LIVE_HEAP_LIMIT.share * 100} %). RSS ${rssBounded ? 'bounded' : 'NOT bounded'}: peak ` +
    `${rssLast.toFixed(0)} MB in ${span(last)} against ${rssBefore.toFixed(0)} MB in ${before} (rule: at most ` +
    `+${RSS_PEAK_LIMIT_MB} MB).`
  );
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
      liveHeapMb: fixture.gcTrace.liveMbBetween(before.at, after.at),
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
      'step receipt p99 | service CPU | database CPU | RSS low–high | heap used low–high | heap live after full GCs | ' +
      'database | waiting | queued | load avg |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  figures.forEach((minute, index) => {
    lines.push(
      `| ${index + 1} | ${minute.sent} | ${minute.answered} | ${minute.failed} | ${ms(minute.p50Ms)} ms | ` +
        `${ms(minute.p99Ms)} ms | ${ms(minute.fireLagP99Ms)} ms | ${ms(minute.cronReceiptP99Ms)} ms | ` +
        `${ms(minute.stepReceiptP99Ms)} ms | ${minute.serviceCpuPercent.toFixed(0)} % | ` +
        `${minute.databaseCpuPercent.toFixed(0)} % | ${lowHigh(minute.rss)} | ${lowHigh(minute.heapUsed)} | ` +
        `${minute.liveHeapMb.length ? `${minute.liveHeapMb.map((mb) => mb.toFixed(0)).join(', ')} MB` : '–'} | ` +
        `${minute.databaseMb.toFixed(0)} MB | ` +
        `${minute.waiting} | ${minute.queued} | ${minute.loadAverage.toFixed(1)} |`,
    );
  });
  return lines.join('\n');
}
