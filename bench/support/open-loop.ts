import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { sleep } from './stats.js';

const now = () => performance.timeOrigin + performance.now();

export interface OpenLoopRequest {
  method: string;
  path: string;
  body?: string;
}

export interface OpenLoopOutcome {
  index: number;
  /** When the schedule said the request goes out (ms since the epoch). */
  intendedAt: number;
  /** From `intendedAt` to the end of the answer, so a slow server also delays what waits behind it. */
  latencyMs: number;
  /** HTTP status, or 0 for a connection error or timeout. */
  status: number;
  headers: Record<string, string | string[] | undefined>;
}

export interface OpenLoopOptions {
  baseUrl: string;
  /** Requests per second, whatever the answers do (no waiting for one before sending the next). */
  ratePerSecond: number;
  startAt: number;
  durationMs: number;
  /** The `index`-th request of the schedule. */
  next(index: number, intendedAt: number): OpenLoopRequest;
  onOutcome(outcome: OpenLoopOutcome): void;
  /** Sockets at most; requests beyond wait in the agent's queue, and that wait counts as latency. */
  maxSockets?: number;
  timeoutMs?: number;
}

/**
 * A constant-arrival-rate load generator: request i is due at startAt + i / rate and goes out then
 * (or as soon as the event loop gets to it), whether or not earlier ones were answered. Unlike a
 * closed loop (autocannon's connections each waiting for their answer), a slower server does not
 * lower the offered load, so a slowdown shows as latency and backlog instead of hiding in fewer
 * requests. Resolves when every request sent has been answered or has failed.
 */
export async function openLoop(options: OpenLoopOptions): Promise<{ sent: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 256 });
  const intervalMs = 1000 / options.ratePerSecond;
  const total = Math.round((options.durationMs * options.ratePerSecond) / 1000);
  const inFlight = new Set<Promise<void>>();
  let sent = 0;
  try {
    while (sent < total) {
      const dueNow = Math.min(total, Math.floor((now() - options.startAt) / intervalMs) + 1);
      for (; sent < dueNow; sent++) {
        const intendedAt = options.startAt + sent * intervalMs;
        const pending = send(agent, options, sent, intendedAt);
        inFlight.add(pending);
        void pending.finally(() => inFlight.delete(pending));
      }
      await sleep(Math.min(5, options.startAt + sent * intervalMs - now()));
    }
    await Promise.all(inFlight);
  } finally {
    agent.destroy();
  }
  return { sent };
}

function send(agent: Agent, options: OpenLoopOptions, index: number, intendedAt: number): Promise<void> {
  const { method, path, body } = options.next(index, intendedAt);
  return new Promise<void>((resolve) => {
    let finished = false;
    const finish = (status: number, headers: OpenLoopOutcome['headers']) => {
      if (finished) return;
      finished = true;
      options.onOutcome({ index, intendedAt, latencyMs: now() - intendedAt, status, headers });
      resolve();
    };
    const outgoing = request(
      options.baseUrl + path,
      {
        method,
        agent,
        headers: body === undefined ? {} : { 'content-type': 'application/json' },
        timeout: options.timeoutMs ?? 30_000,
      },
      (response) => {
        response.resume();
        response.once('end', () => finish(response.statusCode ?? 0, response.headers));
        response.once('error', () => finish(0, {}));
      },
    );
    outgoing.once('timeout', () => outgoing.destroy(new Error('timeout')));
    outgoing.once('error', () => finish(0, {}));
    outgoing.end(body);
  });
}
