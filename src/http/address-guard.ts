import dns from 'node:dns';
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * Guards every outbound callback against server-side request forgery: a callback URL must point at a
 * globally routable address, checked once when the URL is registered and again on every connect,
 * because DNS can answer differently the second time (rebinding).
 */

export interface AddressPolicy {
  /** Accept http:// besides https://. */
  allowHttp: boolean;
  /** Hostnames (exact, case-insensitive), IPs or CIDRs that may be reached even though they are not public. */
  allowedHosts: readonly string[];
}

/** Returns the IP addresses a hostname resolves to. */
export type Resolver = (hostname: string) => Promise<string[]>;

export const systemResolver: Resolver = async (hostname) =>
  (await lookup(hostname, { all: true, verbatim: true })).map(({ address }) => address);

export type UrlRejection = {
  code: 'INVALID_URL' | 'CALLBACK_URL_FORBIDDEN' | 'VALIDATION_FAILED';
  message: string;
};

export const MAX_CALLBACK_URL_LENGTH = 2048;
export const CALLBACK_FORBIDDEN_CODE = 'ECALLBACKFORBIDDEN';

const ALLOW_HINT = 'allow it with CALLBACK_ALLOWED_HOSTS';

type Address = ipaddr.IPv4 | ipaddr.IPv6;
type Cidr = [Address, number];

// ipaddr.js calls everything "unicast" that is in none of its named ranges, including IPv6 space IANA never
// handed out. IPv4-compatible addresses (::a.b.c.d, deprecated) are the dangerous part of that: WHATWG URL
// turns [::127.0.0.1] into [::7f00:1], which ipaddr.js does not unwrap. Global unicast IPv6 lives in 2000::/3.
const IPV4_COMPATIBLE = ipaddr.IPv6.parseCIDR('::/96');
const IPV6_GLOBAL_UNICAST = ipaddr.IPv6.parseCIDR('2000::/3');

/**
 * The ipaddr.js range name that makes `ip` off-limits, or null if it is globally routable unicast.
 * IPv4-mapped IPv6 addresses are judged by the IPv4 address they carry, since that is where the socket goes.
 */
function forbiddenRange(ip: string): string | null {
  if (!ipaddr.isValid(ip)) return 'unparseable';
  const address = ipaddr.process(ip);
  const range = address.range();
  if (range !== 'unicast') return range;
  if (address.kind() === 'ipv6') {
    if (address.match(IPV4_COMPATIBLE)) return 'ipv4Compatible';
    if (!address.match(IPV6_GLOBAL_UNICAST)) return 'unallocated';
  }
  return null;
}

/** Is this IP (v4 or v6, any form ipaddr.js accepts) one we never connect to unless allowed? */
export function isForbiddenAddress(ip: string): boolean {
  return forbiddenRange(ip) !== null;
}

/** Which kind of CALLBACK_ALLOWED_HOSTS entry this is, or null when it is none (config validation rejects it). */
export function parseAllowedHostEntry(entry: string): { kind: 'host' | 'ip' | 'cidr' } | null {
  // Zone ids only mean something on the machine that wrote them.
  if (entry.includes('%')) return null;
  if (entry.includes('/')) {
    // Four-part decimal only: ipaddr.js would read "10/8" as 0.0.0.10/8, which is surely not what was meant.
    return ipaddr.IPv4.isValidCIDRFourPartDecimal(entry) || ipaddr.IPv6.isValidCIDR(entry) ? { kind: 'cidr' } : null;
  }
  if (ipaddr.IPv4.isValidFourPartDecimal(entry) || ipaddr.IPv6.isValid(entry)) return { kind: 'ip' };
  return isHostname(entry) ? { kind: 'host' } : null;
}

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/i;

function isHostname(entry: string): boolean {
  const labels = stripTrailingDot(entry).split('.');
  if (entry.length > 253 || !labels.every((label) => LABEL.test(label))) return false;
  // A URL whose last label is a number gets parsed as an IPv4 address (127.1, 0x7f...), so it can never match.
  return !/^(?:\d+|0x[0-9a-f]*)$/i.test(labels[labels.length - 1]);
}

interface AllowList {
  hosts: ReadonlySet<string>;
  ranges: readonly Cidr[];
}

function compileAllowList(allowedHosts: readonly string[]): AllowList {
  const hosts = new Set<string>();
  const ranges: Cidr[] = [];
  for (const entry of allowedHosts) {
    switch (parseAllowedHostEntry(entry)?.kind) {
      case 'host':
        hosts.add(normalizeHostname(entry));
        break;
      case 'ip': {
        const address = ipaddr.parse(entry);
        ranges.push([address, address.kind() === 'ipv4' ? 32 : 128]);
        break;
      }
      case 'cidr':
        ranges.push(ipaddr.parseCIDR(entry));
        break;
    }
  }
  return { hosts, ranges };
}

function addressAllowed(ip: string, allowList: AllowList): boolean {
  if (!ipaddr.isValid(ip)) return false;
  const address = ipaddr.parse(ip);
  // Both spellings count: an entry 127.0.0.1 covers ::ffff:127.0.0.1, an entry ::ffff:0:0/96 covers it too.
  const candidates: Address[] = [address, ipaddr.process(ip)];
  return allowList.ranges.some(([network, bits]) =>
    candidates.some((candidate) => candidate.kind() === network.kind() && candidate.match(network, bits)),
  );
}

/** True if `ip` falls in one of the IP/CIDR entries of allowedHosts. */
export function isAllowedAddress(ip: string, allowedHosts: readonly string[]): boolean {
  return addressAllowed(ip, compileAllowList(allowedHosts));
}

function hostnameAllowed(hostname: string, allowList: AllowList): boolean {
  return allowList.hosts.has(normalizeHostname(hostname));
}

/** The first address that is forbidden and not allowed, with the reason. */
function firstForbidden(addresses: readonly string[], allowList: AllowList): { address: string; range: string } | null {
  for (const address of addresses) {
    const range = forbiddenRange(address);
    if (range !== null && !addressAllowed(address, allowList)) return { address, range };
  }
  return null;
}

function normalizeHostname(hostname: string): string {
  return stripTrailingDot(hostname.toLowerCase());
}

function stripTrailingDot(hostname: string): string {
  return hostname.endsWith('.') ? hostname.slice(0, -1) : hostname;
}

/** RFC 6761 reserves localhost and everything under it for loopback, whatever a resolver might claim. */
function isLocalhostName(hostname: string): boolean {
  const name = normalizeHostname(hostname);
  return name === 'localhost' || name.endsWith('.localhost');
}

/** "a private address", "an unspecified address": the ipaddr.js range name, readable in a sentence. */
function describeRange(range: string): string {
  const article = /^(?:[aeio]|un(?!i)|rfc)/i.test(range) ? 'an' : 'a';
  return `${article} ${range} address`;
}

function forbidden(message: string): UrlRejection {
  return { code: 'CALLBACK_URL_FORBIDDEN', message };
}

/** Validates a URL string statically and by resolving its host. Returns null if it may be called, else why not. */
export async function checkOutboundUrl(
  raw: string,
  policy: AddressPolicy,
  resolve: Resolver = systemResolver,
): Promise<UrlRejection | null> {
  if (typeof raw !== 'string' || raw.trim() === '') {
    return {
      code: 'INVALID_URL',
      message: 'callbackUrl must be an absolute URL',
    };
  }
  if (raw.length > MAX_CALLBACK_URL_LENGTH) {
    return {
      code: 'VALIDATION_FAILED',
      message: `callbackUrl must be at most ${MAX_CALLBACK_URL_LENGTH} characters`,
    };
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return {
      code: 'INVALID_URL',
      message: 'callbackUrl is not a valid absolute URL',
    };
  }

  const schemes = policy.allowHttp ? ['https:', 'http:'] : ['https:'];
  if (!schemes.includes(url.protocol)) {
    const expected = policy.allowHttp ? 'https:// or http://' : 'https://';
    return forbidden(`callbackUrl must use ${expected}, not ${url.protocol}//`);
  }
  if (url.username !== '' || url.password !== '') {
    return forbidden('callbackUrl must not contain credentials (user:password@); URLs end up in logs');
  }
  if (url.hostname === '') return { code: 'INVALID_URL', message: 'callbackUrl has no host' };

  const allowList = compileAllowList(policy.allowedHosts);
  // WHATWG URL has already turned 2130706433, 0x7f.0.0.1 and 127.1 into 127.0.0.1; IPv6 keeps its brackets.
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (hostnameAllowed(host, allowList)) return null;

  if (net.isIP(host) !== 0) {
    const verdict = firstForbidden([host], allowList);
    return verdict && forbidden(`callbackUrl host ${host} is ${describeRange(verdict.range)}; ${ALLOW_HINT}`);
  }
  if (isLocalhostName(host)) {
    // Never resolved, so there is no address an IP entry could match: only listing the name itself allows it.
    return forbidden(
      `callbackUrl host ${host} is always a loopback address; allow it by listing ${host} in CALLBACK_ALLOWED_HOSTS`,
    );
  }

  let addresses: string[];
  try {
    addresses = await resolve(host);
  } catch {
    addresses = [];
  }
  if (addresses.length === 0) {
    return {
      code: 'INVALID_URL',
      message: `callbackUrl host ${host} could not be resolved`,
    };
  }
  // One bad address is enough: whichever one the connection picks must be safe.
  const verdict = firstForbidden(addresses, allowList);
  return (
    verdict &&
    forbidden(`callbackUrl host ${host} resolves to ${verdict.address}, ${describeRange(verdict.range)}; ${ALLOW_HINT}`)
  );
}

/** The error a guarded connection fails with; `code` is what HTTP clients surface. */
export class CallbackForbiddenError extends Error {
  readonly code = CALLBACK_FORBIDDEN_CODE;

  constructor(
    readonly hostname: string,
    readonly address: string,
    readonly range: string,
  ) {
    super(`refusing to connect to ${hostname}: it resolves to ${address}, ${describeRange(range)}; ${ALLOW_HINT}`);
    this.name = 'CallbackForbiddenError';
  }
}

function wantedFamily(family: dns.LookupOptions['family']): 0 | 4 | 6 {
  if (family === 4 || family === 'IPv4') return 4;
  if (family === 6 || family === 'IPv6') return 6;
  return 0;
}

async function lookupAddresses(
  hostname: string,
  options: dns.LookupOptions,
  resolve: Resolver | undefined,
): Promise<dns.LookupAddress[]> {
  if (!resolve) return dns.promises.lookup(hostname, { ...options, all: true });
  const family = wantedFamily(options.family);
  return (await resolve(hostname))
    .map((address) => ({ address, family: net.isIP(address) }))
    .filter((entry) => entry.family !== 0 && (family === 0 || entry.family === family));
}

function notFound(hostname: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), {
    code: 'ENOTFOUND',
    syscall: 'getaddrinfo',
    hostname,
  });
}

/**
 * A `lookup` for node's net/http options that refuses to hand a forbidden address to the socket. This is the
 * check that counts: the answer used to connect is the one being judged, so rebinding between the registration
 * check and delivery does not help. Node skips `lookup` for IP literals; those cannot change after registration.
 */
export function createGuardedLookup(policy: AddressPolicy, resolve?: Resolver): net.LookupFunction {
  const allowList = compileAllowList(policy.allowedHosts);
  return (hostname, options, callback) => {
    lookupAddresses(hostname, options, resolve).then(
      (addresses) => {
        if (addresses.length === 0) return callback(notFound(hostname), '');
        // Only what the socket gets matters: everything when all, else the first answer.
        const chosen = options.all ? addresses : addresses.slice(0, 1);
        if (!hostnameAllowed(hostname, allowList)) {
          const verdict = firstForbidden(
            chosen.map(({ address }) => address),
            allowList,
          );
          if (verdict) return callback(new CallbackForbiddenError(hostname, verdict.address, verdict.range), '');
        }
        if (options.all) return callback(null, chosen);
        callback(null, chosen[0].address, chosen[0].family);
      },
      (error: NodeJS.ErrnoException) => callback(error, ''),
    );
  };
}
