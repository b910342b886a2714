import autocannon from 'autocannon';
import type { ServerProcess } from './processes.js';

export interface LoadOptions {
  connections: number;
  durationSeconds: number;
  headers?: Record<string, string>;
}

export interface LoadResult {
  requestsPerSecond: number;
  p99Ms: number;
  /** Server CPU time per answered request, in ms; null when it cannot be read. */
  serverCpuMsPerRequest: number | null;
  /** Requests that did not answer 2xx, plus connection errors: a run with any is not a measurement. */
  failures: number;
}

/**
 * Drives GET `path` of `server` with autocannon from this process, after a short warm-up that
 * keeps JIT compilation and connection set-up out of the figures.
 */
export async function measure(server: ServerProcess, path: string, options: LoadOptions): Promise<LoadResult> {
  const url = server.baseUrl + path;
  await autocannon({ url, connections: 8, duration: 2, headers: options.headers });
  const cpuBefore = server.cpuMs();
  const result = await autocannon({
    url,
    connections: options.connections,
    duration: options.durationSeconds,
    headers: options.headers,
  });
  const cpuAfter = server.cpuMs();
  const answered = result['2xx'] + result.non2xx;
  const cpuKnown = cpuBefore !== null && cpuAfter !== null && answered > 0;
  return {
    requestsPerSecond: result.requests.average,
    p99Ms: result.latency.p99,
    serverCpuMsPerRequest: cpuKnown ? (cpuAfter - cpuBefore) / answered : null,
    failures: result.non2xx + result.errors,
  };
}

export interface BurstOptions {
  url: string;
  connections: number;
  /** A fixed number of requests, or else a fixed duration. */
  amount?: number;
  durationSeconds?: number;
  /** The sequence each connection cycles through (paths relative to `url`); default: POST `{}` to `url`. */
  requests?: autocannon.Request[];
  /**
   * autocannon's sample tick, in ms (its default: 1,000). It notices the end of a run only at its
   * next tick, so with 1 s ticks a fixed `amount` run's `seconds` is rounded up to whole seconds
   * (10,000 calls in 3.2 s counted as 4 s); 10 ms times it about as exactly as performance.now().
   */
  sampleIntervalMs?: number;
}

export interface BurstResult {
  /** Requests answered 2xx. */
  done: number;
  /** Non-2xx answers, connection errors and timeouts. */
  failures: number;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
}

/** A closed-loop burst of POSTs with autocannon: each connection sends its next request once answered. */
export async function burst(options: BurstOptions): Promise<BurstResult> {
  const result = await autocannon({
    url: options.url,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
    connections: options.connections,
    ...(options.requests ? { requests: options.requests } : {}),
    ...(options.amount ? { amount: options.amount } : { duration: options.durationSeconds }),
    ...(options.sampleIntervalMs ? { sampleInt: options.sampleIntervalMs } : {}),
  });
  const seconds = (new Date(result.finish).getTime() - new Date(result.start).getTime()) / 1000;
  // A service that stops answering (it once hung for good: a pool deadlock) shows no errors in a
  // fixed-duration run, only no answers.
  if (result['2xx'] === 0) throw new Error(`POST ${options.url}: no successful answer in ${seconds} s`);
  return {
    done: result['2xx'],
    failures: result.non2xx + result.errors + result.timeouts,
    seconds,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
  };
}
