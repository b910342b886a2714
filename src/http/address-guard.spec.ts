import dns from 'node:dns';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AddressPolicy,
  type Resolver,
  type UrlRejection,
  checkOutboundUrl,
  createGuardedLookup,
  isAllowedAddress,
  isForbiddenAddress,
  parseAllowedHostEntry,
} from './address-guard.js';

const STUB_DNS: Record<string, string[]> = {
  'internal.example': ['10.1.2.3'],
  'mixed.example': ['93.184.216.34', '192.168.1.1'],
  'good.example': ['93.184.216.34'],
  'good6.example': ['2606:4700:4700::1111'],
  'v6bad.example': ['fd12::1'],
  'mapped.example': ['::ffff:169.254.169.254'],
  'receiver.internal': ['10.9.8.7'],
  'rebind.example': ['127.0.0.1'],
  'empty.example': [],
};

// Names outside the table fail like NXDOMAIN; nothing in these tests touches real DNS except the socket test.
const stubResolver: Resolver = async (hostname) => {
  const addresses = STUB_DNS[hostname];
  if (!addresses)
    throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), {
      code: 'ENOTFOUND',
    });
  return addresses;
};

const strict: AddressPolicy = { allowHttp: false, allowedHosts: [] };
const withHttp: AddressPolicy = { allowHttp: true, allowedHosts: [] };
const allowing = (...allowedHosts: string[]): AddressPolicy => ({
  allowHttp: false,
  allowedHosts,
});

type Verdict = 'ok' | UrlRejection['code'];

const cases: Array<[url: string, expected: Verdict, policy?: AddressPolicy]> = [
  // Public addresses
  ['https://93.184.216.34/', 'ok'],
  ['https://93.184.216.34:8443/hooks?x=1', 'ok'],
  ['https://[2606:4700:4700::1111]/', 'ok'],
  ['https://[::ffff:8.8.8.8]/', 'ok'],
  ['https://172.32.0.1/', 'ok'],
  // IPv4 loopback in every spelling WHATWG URL normalizes
  ['https://127.0.0.1/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://127.1/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://2130706433/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://0x7f000001/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://0x7f.0.0.1/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://0177.0.0.1/', 'CALLBACK_URL_FORBIDDEN'],
  // Private, link-local, CGNAT, special-purpose IPv4
  ['https://10.0.0.1/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://172.16.0.1/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://172.31.255.255/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://192.168.0.1/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://169.254.169.254/latest/meta-data/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://100.64.0.1/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://100.100.100.200/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://0.0.0.0/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://224.0.0.1/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://255.255.255.255/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://198.18.0.1/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://192.0.2.1/', 'CALLBACK_URL_FORBIDDEN'],
  // IPv6 special ranges
  ['https://[::1]/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://[::]/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://[fe80::1]/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://[fc00::1]/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://[fd00:ec2::254]/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://[ff02::1]/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://[::ffff:127.0.0.1]/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://[::ffff:7f00:1]/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://[::ffff:a9fe:a9fe]/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://[::127.0.0.1]/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://[64:ff9b::a00:1]/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://[2002:a00:1::]/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://[2001::1]/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://[2001:db8::1]/', 'CALLBACK_URL_FORBIDDEN'],
  // Scheme and userinfo
  ['http://93.184.216.34/', 'CALLBACK_URL_FORBIDDEN'],
  ['http://93.184.216.34/', 'ok', withHttp],
  ['http://127.0.0.1/', 'CALLBACK_URL_FORBIDDEN', withHttp],
  ['ftp://93.184.216.34/', 'CALLBACK_URL_FORBIDDEN', withHttp],
  ['file:///etc/passwd', 'CALLBACK_URL_FORBIDDEN', withHttp],
  ['https://user:secret@good.example/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://token@good.example/', 'CALLBACK_URL_FORBIDDEN'],
  // Malformed
  ['not a url', 'INVALID_URL'],
  ['', 'INVALID_URL'],
  ['   ', 'INVALID_URL'],
  ['/relative/path', 'INVALID_URL'],
  ['https://[fe80::1%25eth0]/', 'INVALID_URL'],
  // Names: localhost never resolved, everything else through the stub
  ['https://localhost/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://LOCALHOST./', 'CALLBACK_URL_FORBIDDEN'],
  ['https://foo.localhost/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://good.example/hook', 'ok'],
  ['https://good6.example/hook', 'ok'],
  ['https://internal.example/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://mixed.example/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://v6bad.example/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://mapped.example/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://nxdomain.example/', 'INVALID_URL'],
  ['https://empty.example/', 'INVALID_URL'],
  // allowedHosts
  ['https://127.0.0.1:8443/x', 'ok', allowing('127.0.0.1')],
  ['https://[::ffff:127.0.0.1]:8443/x', 'ok', allowing('127.0.0.1')],
  ['https://[::1]/', 'ok', allowing('::1')],
  ['https://internal.example/', 'ok', allowing('10.0.0.0/8')],
  ['https://internal.example/', 'CALLBACK_URL_FORBIDDEN', allowing('10.2.0.0/16')],
  ['https://internal.example/', 'CALLBACK_URL_FORBIDDEN', allowing('internal.example.com', '192.168.0.0/16')],
  ['https://v6bad.example/', 'ok', allowing('fd00::/8')],
  ['https://mixed.example/', 'ok', allowing('192.168.1.1')],
  ['https://receiver.internal/', 'CALLBACK_URL_FORBIDDEN'],
  ['https://receiver.internal/', 'ok', allowing('receiver.internal')],
  ['https://Receiver.Internal./', 'ok', allowing('RECEIVER.internal')],
  ['https://localhost:3000/', 'ok', allowing('localhost')],
  ['https://localhost:3000/', 'CALLBACK_URL_FORBIDDEN', allowing('127.0.0.0/8', '::1')],
  ['https://10.0.0.1/', 'CALLBACK_URL_FORBIDDEN', allowing('10/8', 'not a host', '10.0.0.0/99')],
];

describe('checkOutboundUrl', () => {
  it.each(cases)('%s → %s', async (url, expected, policy = strict) => {
    const rejection = await checkOutboundUrl(url, policy, stubResolver);
    expect(rejection?.code ?? 'ok').toBe(expected);
    if (rejection) expect(rejection.message).toMatch(/^callbackUrl /);
  });

  it('explains which address is the problem and how to allow it', async () => {
    await expect(checkOutboundUrl('https://internal.example/', strict, stubResolver)).resolves.toEqual({
      code: 'CALLBACK_URL_FORBIDDEN',
      message:
        'callbackUrl host internal.example resolves to 10.1.2.3, a private address; allow it with CALLBACK_ALLOWED_HOSTS',
    });
    const metadata = await checkOutboundUrl('https://169.254.169.254/', strict, stubResolver);
    expect(metadata?.message).toContain('169.254.169.254 is a linkLocal address');
    const mapped = await checkOutboundUrl('https://[::ffff:7f00:1]/', strict, stubResolver);
    expect(mapped?.message).toContain('is a loopback address');
    const compatible = await checkOutboundUrl('https://[::127.0.0.1]/', strict, stubResolver);
    expect(compatible?.message).toContain('::7f00:1 is an ipv4Compatible address');
    const unresolvable = await checkOutboundUrl('https://nxdomain.example/', strict, stubResolver);
    expect(unresolvable?.message).toBe('callbackUrl host nxdomain.example could not be resolved');
  });

  it('caps the length at 2,048 characters', async () => {
    const urlOfLength = (length: number) =>
      `https://good.example/${'a'.repeat(length - 'https://good.example/'.length)}`;
    await expect(checkOutboundUrl(urlOfLength(2048), strict, stubResolver)).resolves.toBeNull();
    await expect(checkOutboundUrl(urlOfLength(2049), strict, stubResolver)).resolves.toMatchObject({
      code: 'VALIDATION_FAILED',
    });
  });

  it('does not ask the resolver about IP literals or localhost', async () => {
    const asked: string[] = [];
    const spy: Resolver = async (hostname) => {
      asked.push(hostname);
      return ['93.184.216.34'];
    };
    await checkOutboundUrl('https://10.0.0.1/', strict, spy);
    await checkOutboundUrl('https://api.localhost/', strict, spy);
    await checkOutboundUrl('https://receiver.internal/', allowing('receiver.internal'), spy);
    expect(asked).toEqual([]);
  });
});

describe('isForbiddenAddress', () => {
  it.each([
    ['8.8.8.8', false],
    ['2606:4700:4700::1111', false],
    ['::ffff:8.8.8.8', false],
    ['127.0.0.1', true],
    ['::ffff:127.0.0.1', true],
    ['::7f00:1', true],
    ['4000::1', true],
    ['fe80::1%eth0', true],
    ['2001:2::1', true],
    ['not an ip', true],
    ['', true],
  ])('%s → %s', (ip, expected) => {
    expect(isForbiddenAddress(ip)).toBe(expected);
  });
});

describe('isAllowedAddress', () => {
  it('matches IP and CIDR entries of either family, ignoring host names and junk', () => {
    const entries = ['receiver.internal', '10.0.0.0/8', '::1', 'fd00::/8', 'garbage/', '10/8'];
    expect(isAllowedAddress('10.255.0.1', entries)).toBe(true);
    expect(isAllowedAddress('::ffff:10.0.0.1', entries)).toBe(true);
    expect(isAllowedAddress('fd12::1', entries)).toBe(true);
    expect(isAllowedAddress('::1', entries)).toBe(true);
    expect(isAllowedAddress('11.0.0.1', entries)).toBe(false);
    expect(isAllowedAddress('0.0.0.1', entries)).toBe(false);
    expect(isAllowedAddress('127.0.0.1', entries)).toBe(false);
    expect(isAllowedAddress('receiver.internal', entries)).toBe(false);
  });
});

describe('parseAllowedHostEntry', () => {
  it.each([
    ['receiver.internal', 'host'],
    ['localhost', 'host'],
    ['my_service.svc.cluster.local.', 'host'],
    ['127.0.0.1', 'ip'],
    ['::1', 'ip'],
    ['::ffff:10.0.0.1', 'ip'],
    ['10.0.0.0/8', 'cidr'],
    ['fd00::/8', 'cidr'],
    ['10/8', null],
    ['127.1', null],
    ['0x7f000001', null],
    ['10.0.0.0/33', null],
    ['fe80::1%eth0', null],
    ['[::1]', null],
    ['https://receiver.internal', null],
    ['receiver.internal:8443', null],
    ['-bad.example', null],
    ['', null],
  ])('%s → %s', (entry, kind) => {
    expect(parseAllowedHostEntry(entry)?.kind ?? null).toBe(kind);
  });
});

type LookupResult = {
  error: NodeJS.ErrnoException | null;
  address: string | dns.LookupAddress[];
  family?: number;
};

function callLookup(policy: AddressPolicy, hostname: string, options: dns.LookupOptions): Promise<LookupResult> {
  const lookup = createGuardedLookup(policy, stubResolver);
  return new Promise((done) => lookup(hostname, options, (error, address, family) => done({ error, address, family })));
}

describe('createGuardedLookup', () => {
  it.each([{ all: false }, { all: true }])('refuses a name rebound to loopback (%o)', async (options) => {
    const { error } = await callLookup(strict, 'rebind.example', options);
    expect(error?.code).toBe('ECALLBACKFORBIDDEN');
    expect(error?.message).toContain('127.0.0.1, a loopback address');
  });

  it('hands out a public address with its family', async () => {
    await expect(callLookup(strict, 'good.example', { all: false })).resolves.toEqual({
      error: null,
      address: '93.184.216.34',
      family: 4,
    });
    await expect(callLookup(strict, 'good6.example', {})).resolves.toEqual({
      error: null,
      address: '2606:4700:4700::1111',
      family: 6,
    });
    await expect(callLookup(strict, 'good.example', { all: true })).resolves.toMatchObject({
      error: null,
      address: [{ address: '93.184.216.34', family: 4 }],
    });
  });

  it('judges every address it returns when all is set, only the first otherwise', async () => {
    expect((await callLookup(strict, 'mixed.example', { all: true })).error?.code).toBe('ECALLBACKFORBIDDEN');
    expect((await callLookup(strict, 'mixed.example', { all: false })).address).toBe('93.184.216.34');
  });

  it('lets allowed addresses and allowed names through', async () => {
    await expect(callLookup(allowing('127.0.0.0/8'), 'rebind.example', { all: false })).resolves.toEqual({
      error: null,
      address: '127.0.0.1',
      family: 4,
    });
    await expect(
      callLookup(allowing('Receiver.Internal'), 'receiver.internal', {
        all: true,
      }),
    ).resolves.toMatchObject({
      error: null,
      address: [{ address: '10.9.8.7', family: 4 }],
    });
  });

  it('respects the family option and reports names without addresses as not found', async () => {
    expect((await callLookup(strict, 'good.example', { family: 6 })).error?.code).toBe('ENOTFOUND');
    expect((await callLookup(strict, 'empty.example', { all: true })).error?.code).toBe('ENOTFOUND');
    expect((await callLookup(strict, 'nxdomain.example', { all: false })).error?.code).toBe('ENOTFOUND');
  });
});

describe('createGuardedLookup on a real socket', () => {
  let server: http.Server | undefined;

  afterEach(async () => {
    await new Promise((done) => server?.close(done) ?? done(undefined));
    server = undefined;
  });

  async function listen(): Promise<{
    port: number;
    connections: () => number;
  }> {
    let connections = 0;
    server = http.createServer((_req, res) => res.end('ok'));
    server.on('connection', () => connections++);
    await new Promise<void>((done) => server!.listen(0, '127.0.0.1', done));
    return {
      port: (server.address() as AddressInfo).port,
      connections: () => connections,
    };
  }

  function get(port: number, policy: AddressPolicy): Promise<{ status?: number; error?: NodeJS.ErrnoException }> {
    return new Promise((done) => {
      // family 4 keeps the test independent of whether this machine's hosts file also maps localhost to ::1.
      const request = http.request(
        {
          host: 'localhost',
          port,
          family: 4,
          agent: false,
          lookup: createGuardedLookup(policy),
        },
        (response) => {
          response.resume();
          response.on('end', () => done({ status: response.statusCode }));
        },
      );
      request.on('error', (error: NodeJS.ErrnoException) => done({ error }));
      request.end();
    });
  }

  it('never opens the connection when localhost resolves to loopback', async () => {
    const { port, connections } = await listen();
    const { error, status } = await get(port, {
      allowHttp: true,
      allowedHosts: [],
    });
    expect(status).toBeUndefined();
    expect(error?.code).toBe('ECALLBACKFORBIDDEN');
    expect(connections()).toBe(0);
  });

  it('connects when the loopback address is allowed', async () => {
    const { port, connections } = await listen();
    await expect(get(port, { allowHttp: true, allowedHosts: ['127.0.0.1'] })).resolves.toEqual({ status: 200 });
    expect(connections()).toBe(1);
  });
});
