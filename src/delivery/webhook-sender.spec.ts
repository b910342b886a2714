import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Test } from '@nestjs/testing';
import { AppConfig } from '../config/app-config.js';
import {
  IDLE_SOCKET_TIMEOUT_MS,
  isSuccessfulResponse,
  parseRetryAfter,
  RESPONSE_EXCERPT_BYTES,
  type SendRequest,
  WebhookSender,
  type WebhookSenderOptions,
} from './webhook-sender.js';

interface ReceivedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** A real receiver on 127.0.0.1 that records every request and counts TCP connections. */
class Receiver {
  readonly requests: ReceivedRequest[] = [];
  connections = 0;
  readonly server: http.Server;

  constructor(private readonly handler: Handler) {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        this.requests.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks) });
        this.handler(req, res);
      });
    });
    this.server.on('connection', () => this.connections++);
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return this;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

const LOCAL: WebhookSenderOptions = { allowHttp: true, allowedHosts: ['127.0.0.1'] };

const senders: WebhookSender[] = [];
const receivers: Receiver[] = [];

function sender(options: WebhookSenderOptions = LOCAL): WebhookSender {
  const created = new WebhookSender(options);
  senders.push(created);
  return created;
}

async function receiver(handler: Handler): Promise<Receiver> {
  const started = await new Receiver(handler).start();
  receivers.push(started);
  return started;
}

const reply =
  (status: number, body = '', headers: Record<string, string> = {}): Handler =>
  (_req, res) => {
    res.writeHead(status, headers);
    res.end(body);
  };

function post(url: string, overrides: Partial<SendRequest> = {}): SendRequest {
  return {
    url,
    method: 'POST',
    headers: { 'content-type': 'application/json', 'user-agent': 'Switchyard/test' },
    body: '{"triggerId":"t1"}',
    timeoutMs: 2000,
    ...overrides,
  };
}

afterEach(async () => {
  senders.splice(0).forEach((created) => created.close());
  await Promise.all(receivers.splice(0).map((started) => started.stop()));
});

describe('WebhookSender outcomes', () => {
  it('succeeds on 200 with a JSON body and keeps the body and headers', async () => {
    const body = '{"status":"ok","message":"done","processedAt":"2025-12-01T10:00:01Z","results":[]}';
    const target = await receiver(reply(200, body, { 'content-type': 'application/json', 'x-receiver': 'seed' }));
    const result = await sender().send(post(target.url));
    expect(result).toMatchObject({
      statusCode: 200,
      responseExcerpt: body,
      error: null,
      retryAfterMs: null,
      succeeded: true,
    });
    expect(result.responseHeaders).toMatchObject({ 'content-type': 'application/json', 'x-receiver': 'seed' });
    expect(result.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('fails on 200 with {"status":"error"} and stores the body', async () => {
    const body = '{"status":"error","message":"downstream unavailable"}';
    const target = await receiver(reply(200, body, { 'content-type': 'application/json' }));
    const result = await sender().send(post(target.url));
    expect(result).toMatchObject({ statusCode: 200, responseExcerpt: body, error: null, succeeded: false });
  });

  it('succeeds on 204 with no body', async () => {
    const target = await receiver(reply(204));
    const result = await sender().send(post(target.url));
    expect(result).toMatchObject({ statusCode: 204, responseExcerpt: null, succeeded: true });
  });

  it('succeeds on 200 with a non-JSON body', async () => {
    const target = await receiver(reply(200, 'OK', { 'content-type': 'text/plain' }));
    const result = await sender().send(post(target.url));
    expect(result).toMatchObject({ statusCode: 200, responseExcerpt: 'OK', succeeded: true });
  });

  it('fails on 500', async () => {
    const target = await receiver(reply(500, 'boom'));
    const result = await sender().send(post(target.url));
    expect(result).toMatchObject({ statusCode: 500, responseExcerpt: 'boom', error: null, succeeded: false });
  });

  it('fails on a redirect without following it', async () => {
    const elsewhere = await receiver(reply(200, '{"status":"ok"}'));
    const target = await receiver(reply(301, '', { location: elsewhere.url }));
    const result = await sender().send(post(target.url));
    expect(result).toMatchObject({ statusCode: 301, error: 'redirect not followed', succeeded: false });
    expect(result.responseHeaders.location).toBe(elsewhere.url);
    expect(target.requests).toHaveLength(1);
    expect(elsewhere.requests).toHaveLength(0);
  });

  it('reads Retry-After in seconds on 429', async () => {
    const target = await receiver(reply(429, '', { 'retry-after': '7' }));
    const result = await sender().send(post(target.url));
    expect(result).toMatchObject({ statusCode: 429, retryAfterMs: 7000, succeeded: false });
  });

  it('reads Retry-After as an HTTP date on 503', async () => {
    const at = new Date(Date.now() + 120_000).toUTCString();
    const target = await receiver(reply(503, '', { 'retry-after': at }));
    const result = await sender().send(post(target.url));
    expect(result.statusCode).toBe(503);
    // toUTCString drops the milliseconds, so up to a second less, plus test slack.
    expect(result.retryAfterMs).toBeGreaterThan(117_000);
    expect(result.retryAfterMs).toBeLessThanOrEqual(120_000);
  });

  it('ignores Retry-After on other statuses', async () => {
    const target = await receiver(reply(500, '', { 'retry-after': '7' }));
    expect((await sender().send(post(target.url))).retryAfterMs).toBeNull();
  });
});

describe('WebhookSender failures without an answer', () => {
  it('times out a receiver that never answers, covering the whole exchange', async () => {
    const target = await receiver(() => {});
    const result = await sender().send(post(target.url, { timeoutMs: 300 }));
    expect(result).toMatchObject({ statusCode: null, error: 'timeout after 300 ms', succeeded: false });
    expect(result.durationMs).toBeGreaterThanOrEqual(290);
    expect(result.durationMs).toBeLessThan(1000);
  });

  it('times out a receiver that sends headers and then trickles its body', async () => {
    const target = await receiver((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"status":');
    });
    const result = await sender().send(post(target.url, { timeoutMs: 300 }));
    expect(result).toMatchObject({ statusCode: 200, error: 'timeout after 300 ms', succeeded: false });
    expect(result.durationMs).toBeLessThan(1000);
  });

  it('reports a refused connection', async () => {
    const closed = await new Receiver(reply(200)).start();
    const url = closed.url;
    await closed.stop();
    const result = await sender().send(post(url));
    expect(result).toMatchObject({ statusCode: null, error: 'connection refused', succeeded: false });
  });

  it('reports a host that does not resolve', async () => {
    const result = await sender({ allowHttp: true, allowedHosts: [], resolver: async () => [] }).send(
      post('http://nowhere.example.com/hook'),
    );
    expect(result).toMatchObject({ statusCode: null, error: 'host not found', succeeded: false });
  });

  it('stops when the caller aborts', async () => {
    const target = await receiver(() => {});
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const result = await sender().send(post(target.url, { timeoutMs: 5000 }), controller.signal);
    expect(result).toMatchObject({ statusCode: null, error: 'aborted', succeeded: false });
    expect(result.durationMs).toBeLessThan(1000);
  });
});

describe('WebhookSender response limit', () => {
  it('keeps exactly 64 KiB of a 1 MiB answer', async () => {
    const target = await receiver(reply(200, 'x'.repeat(1024 * 1024)));
    const result = await sender().send(post(target.url));
    expect(result.responseExcerpt).toHaveLength(RESPONSE_EXCERPT_BYTES);
    expect(result.succeeded).toBe(true);
  });

  it('returns promptly from a receiver that streams without end', async () => {
    const target = await receiver((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(16 * 1024, 'y');
      const pump = (): void => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
    });
    const result = await sender().send(post(target.url, { timeoutMs: 5000 }));
    expect(result).toMatchObject({ statusCode: 200, error: null, succeeded: true });
    expect(result.responseExcerpt).toHaveLength(RESPONSE_EXCERPT_BYTES);
    expect(result.durationMs).toBeLessThan(1000);
  });

  it('cuts the excerpt at a character boundary and makes NUL storable', async () => {
    // 65,535 ASCII bytes, then a 4-byte emoji straddling the 64 KiB line.
    const target = await receiver(reply(200, 'a'.repeat(RESPONSE_EXCERPT_BYTES - 1) + '🚀🚀'));
    const result = await sender().send(post(target.url));
    expect(result.responseExcerpt).toBe('a'.repeat(RESPONSE_EXCERPT_BYTES - 1));

    const binary = await receiver(reply(200, 'a\u0000b'));
    expect((await sender().send(post(binary.url))).responseExcerpt).toBe('a\uFFFDb');
  });
});

describe('WebhookSender request', () => {
  it('sends the body byte for byte, whitespace and non-ASCII included', async () => {
    const target = await receiver(reply(204));
    const body = ' {"name":"Zoë – 日本 🚀","n":1}\n';
    await sender().send(post(target.url, { body }));
    expect(target.requests[0].body.equals(Buffer.from(body, 'utf8'))).toBe(true);
    expect(target.requests[0].headers['content-length']).toBe(String(Buffer.byteLength(body)));
  });

  it('sends the given method and headers', async () => {
    const target = await receiver(reply(204));
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'Switchyard/0.1.0',
      'webhook-id': 'msg_01TEST',
      'webhook-timestamp': '1614265330',
      'webhook-signature': 'v1,abc=',
      'x-switchyard-signature': 'deadbeef',
    };
    await sender().send(post(target.url, { headers }));
    expect(target.requests[0].method).toBe('POST');
    expect(target.requests[0].url).toBe('/hook');
    expect(target.requests[0].headers).toMatchObject(headers);
  });

  it('reuses one keep-alive connection for sequential sends', async () => {
    const target = await receiver(reply(200, '{"status":"ok"}'));
    const client = sender();
    for (let i = 0; i < 5; i++) {
      expect((await client.send(post(target.url))).succeeded).toBe(true);
    }
    expect(target.requests).toHaveLength(5);
    expect(target.connections).toBe(1);
  });
});

/** Numbers each request by its place on its connection: 1 for the first request a connection carries. */
function requestNumberOnConnection(): (req: http.IncomingMessage) => number {
  const counts = new WeakMap<object, number>();
  return (req) => {
    const count = (counts.get(req.socket) ?? 0) + 1;
    counts.set(req.socket, count);
    return count;
  };
}

const signed = (id: string): Partial<SendRequest> => ({
  headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-signature': `v1,${id}=` },
  body: `{"id":"${id}"}`,
});

describe('WebhookSender on a pooled connection the receiver closed', () => {
  // Each receiver answers a connection's first request and does what the test says with the later ones, so what
  // happens on a reused connection is decided by the server, not by timing.
  async function warmedUp(
    later: Handler,
    pooledConnections = 1,
  ): Promise<{ target: Receiver; client: WebhookSender; answered: string[] }> {
    const answered: string[] = [];
    const nth = requestNumberOnConnection();
    const target = await receiver((req, res) => {
      if (nth(req) > 1) return later(req, res);
      answered.push(String(req.headers['webhook-id']));
      res.end('{"status":"ok"}');
    });
    const client = sender();
    // Concurrent sends find no free socket, so each opens a connection that then waits in the pool.
    const warmups = Array.from({ length: pooledConnections }, (_, i) =>
      client.send(post(target.url, signed(`msg_w${i}`))),
    );
    for (const warmup of await Promise.all(warmups)) expect(warmup.succeeded).toBe(true);
    answered.length = 0;
    return { target, client, answered };
  }

  it.each([
    ['closes', 'destroy'],
    ['resets', 'resetAndDestroy'],
  ] as const)(
    'resends once on a fresh connection when the receiver %s the reused one as the request arrives',
    async (_, drop) => {
      // What a receiver's idle timeout does when it fires as our request is written: the connection goes, unanswered.
      // Two pooled connections, both stale: a resend that went back to the pool would meet the second one.
      const { target, client, answered } = await warmedUp((req) => req.socket[drop](), 2);
      const result = await client.send(post(target.url, signed('msg_2')));
      expect(result).toMatchObject({ statusCode: 200, error: null, succeeded: true });
      expect(answered).toEqual(['msg_2']);
      expect(target.connections).toBe(3);
      const [dropped, resent] = target.requests.slice(2);
      expect(target.requests).toHaveLength(4);
      expect(resent.headers).toMatchObject({ 'webhook-id': 'msg_2', 'webhook-signature': 'v1,msg_2=' });
      expect(resent.body.equals(dropped.body)).toBe(true);
    },
  );

  it('fails the attempt when the resend is reset too, without trying again', async () => {
    let requests = 0;
    const target = await receiver((req, res) => (++requests === 1 ? res.end() : req.socket.destroy()));
    const client = sender();
    expect((await client.send(post(target.url, signed('msg_warmup')))).succeeded).toBe(true);
    const result = await client.send(post(target.url, signed('msg_2')));
    expect(result).toMatchObject({ statusCode: null, error: 'connection reset', succeeded: false });
    expect(target.requests).toHaveLength(3);
    expect(target.connections).toBe(2);
  });

  it('does not resend after the response started', async () => {
    const { target, client } = await warmedUp((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"status":', () => req.socket.destroy());
    });
    const result = await client.send(post(target.url, signed('msg_2')));
    expect(result).toMatchObject({ statusCode: 200, error: 'connection reset', succeeded: false });
    expect(target.requests).toHaveLength(2);
    expect(target.connections).toBe(1);
  });

  it('does not resend on a timeout', async () => {
    const { target, client } = await warmedUp(() => {});
    const result = await client.send(post(target.url, { ...signed('msg_2'), timeoutMs: 300 }));
    expect(result).toMatchObject({ statusCode: null, error: 'timeout after 300 ms', succeeded: false });
    expect(target.requests).toHaveLength(2);
    expect(target.connections).toBe(1);
  });

  it('does not resend a reset on a fresh connection', async () => {
    const target = await receiver((req) => req.socket.destroy());
    const result = await sender().send(post(target.url, signed('msg_1')));
    expect(result).toMatchObject({ statusCode: null, error: 'connection reset', succeeded: false });
    expect(target.requests).toHaveLength(1);
    expect(target.connections).toBe(1);
  });

  it('closes an idle connection before the receiver does, honouring a shorter Keep-Alive hint', async () => {
    const target = await receiver(reply(204));
    // Node answers "Keep-Alive: timeout=2"; the agent keeps the socket for 2 s less its 1 s buffer, the server for
    // 2 s plus its own. Without an agent timeout, Node's agent ignores the hint and the server would close first.
    target.server.keepAliveTimeout = 2000;
    expect(IDLE_SOCKET_TIMEOUT_MS).toBeGreaterThan(2000);
    const closedBy = new Promise<string>((resolve) =>
      target.server.once('connection', (socket: Socket) => {
        socket.once('end', () => resolve('sender'));
        socket.once('close', () => resolve('receiver'));
      }),
    );
    expect((await sender().send(post(target.url))).statusCode).toBe(204);
    expect(await closedBy).toBe('sender');
  });
});

describe('WebhookSender address guard', () => {
  it('refuses a hostname that resolves to a private address, before connecting', async () => {
    const target = await receiver(reply(200));
    const result = await sender({ allowHttp: true, allowedHosts: [] }).send(
      post(`http://localhost:${target.port}/hook`),
    );
    expect(result.error).toMatch(/^address forbidden: /);
    expect(result).toMatchObject({ statusCode: null, succeeded: false });
    expect(target.connections).toBe(0);
  });

  it('refuses at connect time when DNS rebinds to a private address', async () => {
    const target = await receiver(reply(200));
    const rebinding = sender({ allowHttp: true, allowedHosts: [], resolver: async () => ['127.0.0.1'] });
    const result = await rebinding.send(post(`http://hooks.example.com:${target.port}/hook`));
    expect(result.error).toMatch(/^address forbidden: .*127\.0\.0\.1/);
    expect(target.connections).toBe(0);
  });

  it('reaches a hostname listed in allowedHosts', async () => {
    const target = await receiver(reply(204));
    const result = await sender({ allowHttp: true, allowedHosts: ['localhost'] }).send(
      post(`http://localhost:${target.port}/hook`),
    );
    expect(result).toMatchObject({ statusCode: 204, error: null, succeeded: true });
  });

  it.each(['127.0.0.1', '[::ffff:127.0.0.1]', '2130706433'])(
    'refuses the IP literal %s, which never goes through lookup',
    async (host) => {
      const target = await receiver(reply(200));
      const result = await sender({ allowHttp: true, allowedHosts: [] }).send(post(`http://${host}:${target.port}/`));
      expect(result.error).toMatch(/^address forbidden: /);
      expect(target.connections).toBe(0);
    },
  );

  it('ignores HTTP_PROXY, which would connect past the guard', async () => {
    const proxy = await receiver(reply(200, '{"via":"proxy"}'));
    const target = await receiver(reply(204));
    for (const name of ['HTTP_PROXY', 'http_proxy']) vi.stubEnv(name, `http://127.0.0.1:${proxy.port}`);
    for (const name of ['NO_PROXY', 'no_proxy']) vi.stubEnv(name, '');
    try {
      expect((await sender().send(post(target.url))).statusCode).toBe(204);
    } finally {
      vi.unstubAllEnvs();
    }
    expect(proxy.connections).toBe(0);
  });

  it('refuses http:// unless allowed, and other schemes always', async () => {
    const target = await receiver(reply(200));
    const strict = sender({ allowHttp: false, allowedHosts: ['127.0.0.1'] });
    expect((await strict.send(post(target.url))).error).toMatch(/^scheme forbidden: http:/);
    expect((await sender().send(post('ftp://127.0.0.1/hook'))).error).toMatch(/^scheme forbidden: ftp:/);
    expect((await sender().send(post('not a url'))).error).toBe('invalid url');
    expect(target.connections).toBe(0);
  });
});

describe('WebhookSender as a Nest provider', () => {
  it('is built from AppConfig', async () => {
    const config = Object.assign(new AppConfig(), { allowHttpCallbacks: true, callbackAllowedHosts: ['127.0.0.1'] });
    const moduleRef = await Test.createTestingModule({
      providers: [{ provide: AppConfig, useValue: config }, WebhookSender],
    }).compile();
    const target = await receiver(reply(204));
    try {
      expect((await moduleRef.get(WebhookSender).send(post(target.url))).statusCode).toBe(204);
    } finally {
      await moduleRef.close();
    }
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2025-12-01T10:00:00Z');

  it.each<[string | undefined, number | null]>([
    ['7', 7000],
    [' 120 ', 120_000],
    ['0', 0],
    ['Mon, 01 Dec 2025 10:00:30 GMT', 30_000],
    ['Monday, 01-Dec-25 10:01:00 GMT', 60_000],
    ['Mon Dec  1 10:00:05 2025', 5000],
    ['Mon, 01 Dec 2025 09:00:00 GMT', 0],
    ['-5', null],
    ['1.5', null],
    ['soon', null],
    ['Mon, 99 Foo 2025 10:00:00 GMT', null],
    ['', null],
    [undefined, null],
  ])('%j → %j', (value, expected) => {
    expect(parseRetryAfter(value, now)).toBe(expected);
  });
});

describe('isSuccessfulResponse', () => {
  it.each<[number, string | null, boolean]>([
    [200, '{"status":"ok"}', true],
    [200, '{"status":"error"}', false],
    [201, '{"status":"error","message":"x"}', false],
    [200, '[{"status":"error"}]', true],
    [200, '{"status":"ERROR"}', true],
    [204, null, true],
    [200, 'not json', true],
    [200, '{"status":"error"', true],
    [299, null, true],
    [199, null, false],
    [301, null, false],
    [404, '{"status":"ok"}', false],
    [500, null, false],
  ])('%i %j → %j', (status, body, expected) => {
    expect(isSuccessfulResponse(status, body)).toBe(expected);
  });
});
