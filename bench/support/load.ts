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
