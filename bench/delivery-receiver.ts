import { type Answer, serveReceiver } from './support/receiver-server.js';

/**
 * The webhook receiver of the `delivery` scenario, in its own process so that neither the service
 * nor the raw loop shares an event loop with it. It answers every POST with 200 at once (keep-alive)
 * and records, per request, the receipt time minus the `enqueuedAt` the sender embedded in the body.
 * Control routes: GET /_stats (figures since the last reset), POST /_reset, and
 * GET /_wait?count=N&timeoutMs=T, which answers once N requests arrived (or 408 at the deadline).
 */

interface Receipts {
  count: number;
  ids: Set<string>;
  firstAt: number | null;
  lastAt: number | null;
  latenciesMs: number[];
  unreadable: number;
}

const fresh = (): Receipts => ({
  count: 0,
  ids: new Set(),
  firstAt: null,
  lastAt: null,
  latenciesMs: [],
  unreadable: 0,
});
let receipts = fresh();
let waiters: { count: number; answer: () => void }[] = [];

const SUCCESS = JSON.stringify({ status: 'success', message: 'ok' });

serveReceiver({
  message(_path, headers, body, at) {
    receive(at, headers['webhook-id'], body);
    return { status: 200, body: SUCCESS };
  },
  control,
});

function receive(at: number, webhookId: string | string[] | undefined, body: string): void {
  receipts.count++;
  if (typeof webhookId === 'string') receipts.ids.add(webhookId);
  receipts.firstAt ??= at;
  receipts.lastAt = at;
  try {
    const enqueuedAt = (JSON.parse(body) as { enqueuedAt?: unknown }).enqueuedAt;
    if (typeof enqueuedAt === 'number') receipts.latenciesMs.push(at - enqueuedAt);
    else receipts.unreadable++;
  } catch {
    receipts.unreadable++;
  }
  waiters = waiters.filter((waiter) => {
    if (receipts.count < waiter.count) return true;
    waiter.answer();
    return false;
  });
}

function control(path: string, method: string, query: URLSearchParams): Answer | Promise<Answer> | undefined {
  if (path === '/_stats' && method === 'GET') {
    const { ids, ...figures } = receipts;
    return { status: 200, body: { ...figures, distinct: ids.size } };
  }
  if (path === '/_reset' && method === 'POST') {
    receipts = fresh();
    return { status: 200, body: {} };
  }
  if (path === '/_wait' && method === 'GET') {
    const count = Number(query.get('count'));
    const timeoutMs = Number(query.get('timeoutMs') ?? 60_000);
    if (receipts.count >= count) return { status: 200, body: { count: receipts.count } };
    return new Promise<Answer>((resolve) => {
      const timer = setTimeout(() => {
        waiters = waiters.filter((waiter) => waiter.answer !== answer);
        resolve({ status: 408, body: { count: receipts.count } });
      }, timeoutMs);
      const answer = () => {
        clearTimeout(timer);
        resolve({ status: 200, body: { count: receipts.count } });
      };
      waiters.push({ count, answer });
    });
  }
  return undefined;
}
