import { createHmac } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';

/**
 * A webhook receiver written the way the seed's examples write one: an Express-style handler
 * (`app.post("/triggers/callback", (req, res) => …)`) that checks the signature first, answers
 * `401 {"status":"error"}` when it does not verify, and otherwise `res.json({status: "success", …})`.
 * It runs on plain node:http so the tests need no Express.
 *
 * The signature check is the receiver's half of SPEC §5, done with the tools a receiver would use:
 * the `standardwebhooks` package given the backend's `whsec_` secret, and the older seed scheme, a
 * hex HMAC-SHA256 of the raw body under the base64-decoded key. A header carries one signature per
 * valid secret (space-separated) during a rotation, so a signature matches if any entry does.
 */

export interface SeedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** The body exactly as received (what both signatures cover). */
  rawBody: string;
  /** `express.json()`'s `req.body`. */
  body: unknown;
  /** When the body had fully arrived (ms since the epoch). */
  at: number;
  /** The trusted secret each scheme verified with, or null when none did. */
  verifiedBy: { standardWebhooks: string | null; hex: string | null };
}

export interface SeedResponse {
  status(code: number): SeedResponse;
  set(name: string, value: string): SeedResponse;
  json(body: unknown): void;
  /** Answer without a body (e.g. after `status(204)`). */
  send(text?: string): void;
}

export type SeedHandler = (req: SeedRequest, res: SeedResponse) => void | Promise<void>;

export const HEX_SIGNATURE_HEADER = 'x-switchyard-signature';

/** The seed's happy path: do the work, answer `{status, message, processedAt}`. */
export const seedSuccess: SeedHandler = (_req, res) =>
  res.json({ status: 'success', message: 'Trigger processed successfully', processedAt: new Date().toISOString() });

export class SeedReceiver {
  readonly requests: SeedRequest[] = [];
  /** TCP connections accepted, whether or not a request followed. */
  connections = 0;
  /** The business logic behind the signature check; tests swap it to fail, stall or answer oddly. */
  handler: SeedHandler = seedSuccess;
  /** `WEBHOOK_SECRET`: every secret this receiver accepts (one per backend it serves, more during a rotation). */
  private readonly secrets = new Set<string>();
  private server!: Server;
  private waiters: { count: number; resolve: () => void }[] = [];

  static async start(): Promise<SeedReceiver> {
    const receiver = new SeedReceiver();
    receiver.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const rawBody = Buffer.concat(chunks).toString('utf8');
        const request: SeedRequest = {
          method: req.method ?? '',
          path: req.url ?? '',
          headers: req.headers,
          rawBody,
          body: parseJson(rawBody),
          at: Date.now(),
          verifiedBy: receiver.verify(req.headers, rawBody),
        };
        receiver.requests.push(request);
        receiver.notify();
        let status = 200;
        const headers: Record<string, string> = {};
        const response: SeedResponse = {
          status(code) {
            status = code;
            return response;
          },
          set(name, value) {
            headers[name.toLowerCase()] = value;
            return response;
          },
          json(body) {
            res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
          },
          send(text = '') {
            res.writeHead(status, headers).end(text);
          },
        };
        // As in the seed: verify before anything else.
        if (!request.verifiedBy.standardWebhooks || !request.verifiedBy.hex) {
          return response.status(401).json({ status: 'error', message: 'Invalid signature' });
        }
        void Promise.resolve(receiver.handler(request, response)).catch((error: Error) =>
          response.status(500).json({ status: 'error', message: error.message }),
        );
      });
    });
    receiver.server.on('connection', () => receiver.connections++);
    await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  /** Accept deliveries signed with these secrets from now on. */
  trust(...secrets: string[]): void {
    for (const secret of secrets) this.secrets.add(secret);
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  url(path = '/triggers/callback', host = '127.0.0.1'): string {
    return `http://${host}:${this.port}${path}`;
  }

  /** Requests carrying this webhook-id, oldest first. */
  requestsFor(webhookId: string): SeedRequest[] {
    return this.requests.filter((request) => request.headers['webhook-id'] === webhookId);
  }

  /** Resolves once at least `count` requests arrived in total (rejects after `timeoutMs`). */
  waitFor(count: number, timeoutMs = 15_000): Promise<void> {
    if (this.requests.length >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`expected ${count} requests, got ${this.requests.length} in ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.waiters.push({
        count,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private verify(headers: IncomingHttpHeaders, rawBody: string): SeedRequest['verifiedBy'] {
    const verifiedBy: SeedRequest['verifiedBy'] = { standardWebhooks: null, hex: null };
    for (const secret of this.secrets) {
      if (!verifiedBy.standardWebhooks && verifiesStandard(secret, headers, rawBody))
        verifiedBy.standardWebhooks = secret;
      if (!verifiedBy.hex && hexSignatures(headers).includes(hexSignature(secret, rawBody))) verifiedBy.hex = secret;
    }
    return verifiedBy;
  }

  private notify(): void {
    this.waiters = this.waiters.filter((waiter) => {
      if (this.requests.length < waiter.count) return true;
      waiter.resolve();
      return false;
    });
  }
}

/** What the `standardwebhooks` package says about these headers and body under one secret. */
export function verifiesStandard(secret: string, headers: IncomingHttpHeaders, rawBody: string): boolean {
  try {
    new Webhook(secret).verify(rawBody, {
      'webhook-id': String(headers['webhook-id']),
      'webhook-timestamp': String(headers['webhook-timestamp']),
      'webhook-signature': String(headers['webhook-signature']),
    });
    return true;
  } catch {
    return false;
  }
}

/** The seed scheme: hex HMAC-SHA256 of the raw body, keyed with the base64 part of `whsec_…`. */
export function hexSignature(secret: string, rawBody: string): string {
  return createHmac('sha256', Buffer.from(secret.slice('whsec_'.length), 'base64'))
    .update(rawBody)
    .digest('hex');
}

export function hexSignatures(headers: IncomingHttpHeaders): string[] {
  return String(headers[HEX_SIGNATURE_HEADER] ?? '')
    .split(' ')
    .filter(Boolean);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
