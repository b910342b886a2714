import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';

/**
 * The webhook receiver of the `delivery` scenario, in its own process so that neither the service
 * nor the raw loop shares an event loop with it. It answers every POST with 200 at once (keep-alive)
 * and records, per request, the receipt time minus the `enqueuedAt` the sender embedded in the body.
 * Control routes: GET /_stats (figures since the last reset), POST /_reset, and
 * GET /_wait?count=N&timeoutMs=T, which answers once N requests arrived (or 408 at the deadline).
 */

/** Wall-clock milliseconds with sub-millisecond resolution; the senders stamp bodies the same way. */
const now = () => performance.timeOrigin + performance.now();

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

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (chunk: Buffer) => chunks.push(chunk));
  req.on('end', () => {
    const at = now();
    const url = new URL(req.url ?? '/', 'http://receiver');
    if (url.pathname.startsWith('/_')) return control(url, req, res);
    receive(at, req.headers['webhook-id'], Buffer.concat(chunks).toString('utf8'));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(SUCCESS);
  });
});
// Longer than any pause in a run, so senders' pooled connections are never closed under them.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;

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

function control(url: URL, req: IncomingMessage, res: ServerResponse): void {
  const json = (status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (url.pathname === '/_stats' && req.method === 'GET') {
    const { ids, ...figures } = receipts;
    return json(200, { ...figures, distinct: ids.size });
  }
  if (url.pathname === '/_reset' && req.method === 'POST') {
    receipts = fresh();
    return json(200, {});
  }
  if (url.pathname === '/_wait' && req.method === 'GET') {
    const count = Number(url.searchParams.get('count'));
    const timeoutMs = Number(url.searchParams.get('timeoutMs') ?? 60_000);
    if (receipts.count >= count) return json(200, { count: receipts.count });
    const timer = setTimeout(() => {
      waiters = waiters.filter((waiter) => waiter.answer !== answer);
      json(408, { count: receipts.count });
    }, timeoutMs);
    const answer = () => {
      clearTimeout(timer);
      json(200, { count: receipts.count });
    };
    waiters.push({ count, answer });
    return;
  }
  json(404, {});
}

server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? '127.0.0.1');
process.once('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
