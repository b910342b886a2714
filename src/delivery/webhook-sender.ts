import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import axios, { type AxiosInstance, type AxiosRequestConfig, type AxiosResponse } from 'axios';
import { AppConfig } from '../config/app-config.js';
import {
  CALLBACK_FORBIDDEN_CODE,
  createGuardedLookup,
  isAllowedAddress,
  isForbiddenAddress,
  type Resolver,
} from '../http/address-guard.js';

/**
 * Sends one delivery attempt and reports what happened. No database and no retries (save the one resend on a fresh
 * connection when a pooled one was already closed, see `request`): the caller records the result and decides what
 * comes next. Network and HTTP failures are results, never exceptions.
 */

export interface SendRequest {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: string;
  timeoutMs: number;
}

export interface SendResult {
  /** Null when no HTTP answer arrived. */
  statusCode: number | null;
  durationMs: number;
  /** The first 64 KiB of the response body as UTF-8 text, null if there was none. */
  responseExcerpt: string | null;
  responseHeaders: Record<string, string>;
  /** Why there was no usable answer ('timeout after 10000 ms', 'redirect not followed', …); null otherwise. */
  error: string | null;
  /** Retry-After of a 429 or 503, in milliseconds from now. */
  retryAfterMs: number | null;
  /** SPEC §5: 2xx whose body is not JSON with "status": "error". */
  succeeded: boolean;
}

export interface WebhookSenderOptions {
  /** Accept http:// besides https://. */
  allowHttp: boolean;
  /** CALLBACK_ALLOWED_HOSTS: hosts, IPs and CIDRs exempt from the private-address block. */
  allowedHosts: readonly string[];
  /** Replaces DNS, for tests; the guard judges whatever it answers. */
  resolver?: Resolver;
}

export const RESPONSE_EXCERPT_BYTES = 64 * 1024;

/**
 * How long a pooled socket may sit idle before the agent closes it. Servers close idle keep-alive connections on
 * their own clock (Node's http server after 5 s, nginx 75 s, many load balancers 60 s); a request written the moment
 * the server gives up meets a reset. Closing ours first, below the shortest common server timeout, makes that rare.
 * Node's Agent has no separate idle timeout: `timeout` is the socket timeout, which destroys only free sockets
 * (axios sets it to 0 while a request is in flight). It also makes the agent honour a shorter `Keep-Alive: timeout=`
 * hint, less `agentKeepAliveTimeoutBuffer` (1 s); with no `timeout` the agent ignores the hint.
 */
export const IDLE_SOCKET_TIMEOUT_MS = 4000;

/**
 * A Nest provider built from AppConfig; tests pass the policy directly (with a fake resolver if they like).
 * A plain axios instance rather than @nestjs/axios's HttpService: the sender needs its own agents (guarded lookup,
 * pooling) and a promise API, and a test can build one without a Nest module.
 */
@Injectable()
export class WebhookSender implements OnApplicationShutdown {
  private readonly options: WebhookSenderOptions;
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;
  /** Without keep-alive: every request on them opens its own connection. Only for the resend in `request`. */
  private readonly freshHttpAgent: http.Agent;
  private readonly freshHttpsAgent: https.Agent;
  private readonly client: AxiosInstance;

  constructor(@Inject(AppConfig) settings: AppConfig | WebhookSenderOptions) {
    // Shape, not instanceof: tests and tools hand over AppConfig-shaped literals too.
    const options: WebhookSenderOptions =
      'allowHttpCallbacks' in settings
        ? { allowHttp: settings.allowHttpCallbacks, allowedHosts: settings.callbackAllowedHosts }
        : settings;
    this.options = options;
    // The guard runs inside the agents' connect, on the address the socket will use, so a hostname that
    // rebinds to a private address after registration is still refused.
    const lookup = createGuardedLookup(
      { allowHttp: options.allowHttp, allowedHosts: options.allowedHosts },
      options.resolver,
    );
    const agentOptions = { keepAlive: true, maxSockets: 256, timeout: IDLE_SOCKET_TIMEOUT_MS, lookup };
    this.httpAgent = new http.Agent(agentOptions);
    this.httpsAgent = new https.Agent(agentOptions);
    this.freshHttpAgent = new http.Agent({ keepAlive: false, lookup });
    this.freshHttpsAgent = new https.Agent({ keepAlive: false, lookup });
    this.client = axios.create({
      adapter: 'http',
      httpAgent: this.httpAgent,
      httpsAgent: this.httpsAgent,
      // An HTTP(S)_PROXY from the environment would connect to the proxy, bypassing the guarded lookup.
      proxy: false,
      // A 3xx is a failed attempt: following it would send a signed body to a place nobody registered.
      maxRedirects: 0,
      validateStatus: () => true,
      responseType: 'stream',
      decompress: true,
      // The body goes out as the Buffer of the signed string. axios' default transform would trim a string sent as
      // application/json; the identity transform keeps any later change from re-serializing what was signed.
      transformRequest: [(data: unknown) => data],
    });
  }

  async send(request: SendRequest, signal?: AbortSignal): Promise<SendResult> {
    const started = performance.now();
    const result = (fields: Partial<SendResult>): SendResult => ({
      statusCode: null,
      responseExcerpt: null,
      responseHeaders: {},
      error: null,
      retryAfterMs: null,
      succeeded: false,
      ...fields,
      durationMs: Math.round(performance.now() - started),
    });

    const refusal = this.refusal(request.url);
    if (refusal) return result({ error: refusal });

    // One timer for the whole exchange (lookup, connect, headers, body): axios' `timeout` stops counting once
    // the response starts, and a receiver trickling its body must not hold a worker forever.
    const timer = new AbortController();
    const timeout = setTimeout(() => timer.abort(), request.timeoutMs);
    const combined = signal ? AbortSignal.any([timer.signal, signal]) : timer.signal;
    let response: AxiosResponse<Readable> | undefined;
    try {
      response = await this.request(
        {
          url: request.url,
          method: request.method,
          headers: request.headers,
          data: Buffer.from(request.body, 'utf8'),
        },
        combined,
      );
      const statusCode = response.status;
      const excerpt = await readExcerpt(response.data);
      const retryAfterMs =
        statusCode === 429 || statusCode === 503
          ? parseRetryAfter(headerValue(response.headers['retry-after']), Date.now())
          : null;
      return result({
        statusCode,
        responseExcerpt: excerpt,
        responseHeaders: flattenHeaders(response.headers),
        error: statusCode >= 300 && statusCode < 400 ? 'redirect not followed' : null,
        retryAfterMs,
        succeeded: isSuccessfulResponse(statusCode, excerpt),
      });
    } catch (error) {
      response?.data.destroy();
      const reason = timer.signal.aborted
        ? `timeout after ${request.timeoutMs} ms`
        : signal?.aborted
          ? 'aborted'
          : describeError(error, request.timeoutMs);
      // Headers may already have arrived when the body failed; keep the status for the attempt log.
      return result({ statusCode: response?.status ?? null, error: reason });
    } finally {
      clearTimeout(timeout);
    }
  }

  /**
   * Sends once, and once more on a fresh connection when the first try died on a reused socket before any response
   * byte: the keep-alive race, where the receiver closed the idle connection as we wrote to it. The receiver never
   * read that request (it was closing the connection, not answering it), so resending is safe and the receiver is not
   * charged with a failed attempt it never saw. Should it have read the request and then dropped the connection
   * without a word, the resend carries the same webhook-id, as the next scheduled attempt would: receivers dedupe
   * (at-least-once). Anything else is the attempt's result: a response that started (any status), a timeout or
   * abort, a refused connection, or a reset on a fresh socket. The fresh agents keep the guarded lookup, so the
   * address is judged again; the resend shares the attempt's timer and signal.
   */
  private async request(config: AxiosRequestConfig, signal: AbortSignal): Promise<AxiosResponse<Readable>> {
    try {
      return await this.client.request<Readable>({ ...config, signal });
    } catch (error) {
      if (signal.aborted || !isResetOfReusedSocket(error)) throw error;
      return await this.client.request<Readable>({
        ...config,
        signal,
        httpAgent: this.freshHttpAgent,
        httpsAgent: this.freshHttpsAgent,
      });
    }
  }

  /** Closes pooled connections. Call after in-flight sends have finished (Nest: onApplicationShutdown). */
  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
    this.freshHttpAgent.destroy();
    this.freshHttpsAgent.destroy();
  }

  onApplicationShutdown(): void {
    this.close();
  }

  /** Static checks before any connection: scheme, and IP-literal hosts, which node never passes to `lookup`. */
  private refusal(raw: string): string | null {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return 'invalid url';
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && this.options.allowHttp)) {
      return `scheme forbidden: ${url.protocol}// (allowed: ${this.options.allowHttp ? 'https, http' : 'https'})`;
    }
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    if (net.isIP(host) !== 0 && isForbiddenAddress(host) && !isAllowedAddress(host, this.options.allowedHosts)) {
      return `address forbidden: ${host} is not a public address; allow it with CALLBACK_ALLOWED_HOSTS`;
    }
    return null;
  }
}

/**
 * ECONNRESET ('socket hang up' when the receiver closed, 'read ECONNRESET' when it reset) on a socket taken from the
 * pool, before a response arrived. With responseType 'stream' axios settles at the response headers, so any error it
 * rejects with came before them; a failure while reading the body surfaces later, in readExcerpt.
 */
function isResetOfReusedSocket(error: unknown): boolean {
  if (!axios.isAxiosError(error) || error.code !== 'ECONNRESET' || error.response !== undefined) return false;
  return (error.request as http.ClientRequest | undefined)?.reusedSocket === true;
}

/**
 * Reads at most RESPONSE_EXCERPT_BYTES, then destroys the stream: a receiver streaming gigabytes costs us 64 KiB.
 * Destroying a half-read response also closes its socket instead of returning it to the pool, which is right.
 */
async function readExcerpt(stream: Readable): Promise<string | null> {
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      length += (chunk as Buffer).length;
      if (length >= RESPONSE_EXCERPT_BYTES) break;
    }
  } finally {
    stream.destroy();
  }
  if (length === 0) return null;
  const bytes = utf8Prefix(Buffer.concat(chunks, length), RESPONSE_EXCERPT_BYTES);
  // PostgreSQL text and jsonb cannot hold NUL: a binary answer must not make the attempt unrecordable.
  return bytes.toString('utf8').replaceAll('\u0000', '\uFFFD');
}

/** The first `max` bytes, backed up to a character boundary so the cut does not leave half a character. */
function utf8Prefix(bytes: Buffer, max: number): Buffer {
  if (bytes.length <= max) return bytes;
  let end = max;
  // bytes[end] is the first byte left out; while it continues a character, that character started earlier.
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

/** SPEC §5: any 2xx succeeds unless its body is JSON with "status": "error"; empty and non-JSON bodies succeed. */
export function isSuccessfulResponse(statusCode: number, body: string | null): boolean {
  if (statusCode < 200 || statusCode >= 300) return false;
  if (body === null) return true;
  try {
    const parsed: unknown = JSON.parse(body);
    return !(typeof parsed === 'object' && parsed !== null && (parsed as { status?: unknown }).status === 'error');
  } catch {
    // Not JSON, or JSON cut at 64 KiB: nothing says it failed.
    return true;
  }
}

/**
 * Retry-After in milliseconds from `now`: delta-seconds or an HTTP date (a past date gives 0). Null when absent or
 * unreadable. Date.parse alone is far too lenient ("-5" is a year), so a date must look like one: a weekday or
 * month name and a clock time.
 */
export function parseRetryAfter(value: string | undefined, now: number): number | null {
  const text = value?.trim();
  if (!text) return null;
  if (/^\d+$/.test(text)) {
    const ms = Number(text) * 1000;
    return Number.isFinite(ms) ? ms : null;
  }
  if (!/[a-z]{3}/i.test(text) || !/\d{1,2}:\d{2}:\d{2}/.test(text)) return null;
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

function headerValue(value: unknown): string | undefined {
  if (Array.isArray(value)) return value.join(', ');
  return value === undefined || value === null ? undefined : String(value);
}

function flattenHeaders(headers: AxiosResponse['headers']): Record<string, string> {
  const flat: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    const text = headerValue(value);
    if (text !== undefined) flat[name.toLowerCase()] = text;
  }
  return flat;
}

const ERROR_CODES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host not found (temporary DNS failure)',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
};

/**
 * A short reason from the error's code and message only: axios errors also carry the request config, whose
 * headers hold the signatures, so the error object itself never leaves this function.
 */
function describeError(error: unknown, timeoutMs: number): string {
  const { code, message = '' } = error as { code?: string; message?: string };
  if (code === CALLBACK_FORBIDDEN_CODE) return `address forbidden: ${message}`;
  if (code === 'ETIMEDOUT') return `timeout after ${timeoutMs} ms`;
  if (code && ERROR_CODES[code]) return ERROR_CODES[code];
  return [code, message].filter(Boolean).join(': ') || 'request failed';
}
