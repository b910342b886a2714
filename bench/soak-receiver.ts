import { type Answer, serveReceiver } from './support/receiver-server.js';
import { percentile } from './support/stats.js';

/**
 * The backends of the `soak` scenario, in their own process so that neither the service nor the
 * harness's load generator shares an event loop with them. Paths listed in RECEIVER_FAILING
 * (comma-separated, e.g. `/backend-0`) answer every POST with 500, so the service retries them;
 * every other path answers 200 at once over keep-alive.
 *
 * A healthy path files each message by its group (the cron payload's `runKey`, or `group` in a
 * webhook step's body) and, on its first receipt, its lag: arrival − `executionTime` for a cron
 * payload, arrival − `sentAt` (the harness's clock when it sent the flow-starting call) for a step,
 * bucketed by the minute of that base time since the epoch set with POST /_epoch?at=<ms>.
 * Control routes: GET /_groups (per group: received, distinct, lastAt), GET /_minutes?group=
 * (per minute: count, p50, p99 of the lags), GET /_ids (the distinct webhook-ids received on
 * healthy paths, attempts per webhook-id on failing ones, how many arrived twice).
 */

const failingPaths = new Set((process.env.RECEIVER_FAILING ?? '').split(',').filter(Boolean));

interface Group {
  received: number;
  ids: Set<string>;
  lastAt: number;
  lagsByMinute: Map<number, number[]>;
}

const groups = new Map<string, Group>();
const failingAttempts = new Map<string, number>();
let arrivedTwice = 0;
let unreadable = 0;
let epoch = 0;

serveReceiver({
  message(path, headers, body, at) {
    const webhookId = String(headers['webhook-id']);
    if (failingPaths.has(path)) {
      failingAttempts.set(webhookId, (failingAttempts.get(webhookId) ?? 0) + 1);
      return { status: 500, body: { status: 'error', message: 'failing on purpose' } };
    }
    receive(at, webhookId, body);
    return { status: 200, body: { status: 'success' } };
  },
  control,
});

function receive(at: number, webhookId: string, body: string): void {
  let payload: { runKey?: string; executionTime?: string; group?: string; sentAt?: number };
  try {
    payload = JSON.parse(body);
  } catch {
    unreadable++;
    return;
  }
  const name = payload.runKey ?? payload.group;
  const base = payload.executionTime ? Date.parse(payload.executionTime) : payload.sentAt;
  if (!name || typeof base !== 'number' || Number.isNaN(base)) {
    unreadable++;
    return;
  }
  const group = groupOf(name);
  group.received++;
  group.lastAt = Math.max(group.lastAt, at);
  if (group.ids.has(webhookId)) {
    arrivedTwice++;
    return;
  }
  group.ids.add(webhookId);
  const minute = Math.floor((base - epoch) / 60_000);
  let lags = group.lagsByMinute.get(minute);
  if (!lags) group.lagsByMinute.set(minute, (lags = []));
  lags.push(at - base);
}

function groupOf(name: string): Group {
  let group = groups.get(name);
  if (!group) groups.set(name, (group = { received: 0, ids: new Set(), lastAt: 0, lagsByMinute: new Map() }));
  return group;
}

function control(path: string, method: string, query: URLSearchParams): Answer | undefined {
  if (path === '/_epoch' && method === 'POST') {
    epoch = Number(query.get('at'));
    return { status: 200, body: {} };
  }
  if (path === '/_groups' && method === 'GET') {
    const summary = [...groups].map(([name, group]) => ({
      name,
      received: group.received,
      distinct: group.ids.size,
      lastAt: group.lastAt,
    }));
    return { status: 200, body: { groups: summary, arrivedTwice, unreadable } };
  }
  if (path === '/_minutes' && method === 'GET') {
    const group = groupOf(query.get('group') ?? '');
    const minutes = [...group.lagsByMinute].map(([minute, lags]) => ({
      minute,
      count: lags.length,
      p50: percentile(lags, 0.5),
      p99: percentile(lags, 0.99),
    }));
    return { status: 200, body: { minutes } };
  }
  if (path === '/_ids' && method === 'GET') {
    const healthy = [...groups.values()].flatMap((group) => [...group.ids]);
    return {
      status: 200,
      body: { healthy, failingAttempts: Object.fromEntries(failingAttempts), arrivedTwice, unreadable },
    };
  }
  return undefined;
}
