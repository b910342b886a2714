import { createServer, type IncomingHttpHeaders } from 'node:http';
import { performance } from 'node:perf_hooks';

/** Wall-clock milliseconds with sub-millisecond resolution; the senders stamp bodies the same way. */
export const now = () => performance.timeOrigin + performance.now();

export interface Answer {
  status: number;
  body: unknown;
}

export interface ReceiverHandlers {
  /** A webhook: its path, headers, raw body and arrival time; answers at once. */
  message(path: string, headers: IncomingHttpHeaders, body: string, at: number): Answer;
  /** A control route of the harness (path starting with `/_`); may answer later; undefined is 404. */
  control(path: string, method: string, query: URLSearchParams): Answer | Promise<Answer> | undefined;
}

/**
 * The HTTP side of the bench's receiver processes: reads each request's body, sends `/_…` paths to
 * `control` and everything else to `message`, answers JSON, keeps connections alive longer than
 * any pause in a run (so senders' pooled connections are never closed under them), listens on
 * PORT/HOST and exits on SIGTERM.
 */
export function serveReceiver(handlers: ReceiverHandlers): void {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const at = now();
      const url = new URL(req.url ?? '/', 'http://receiver');
      const answer = url.pathname.startsWith('/_')
        ? handlers.control(url.pathname, req.method ?? 'GET', url.searchParams)
        : handlers.message(url.pathname, req.headers, Buffer.concat(chunks).toString('utf8'), at);
      void Promise.resolve(answer ?? { status: 404, body: {} }).then(({ status, body }) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(typeof body === 'string' ? body : JSON.stringify(body));
      });
    });
  });
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 125_000;
  server.listen(Number(process.env.PORT ?? 0), process.env.HOST ?? '127.0.0.1');
  process.once('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}
