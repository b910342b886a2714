import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseEnv } from 'node:util';
import { ConfigError, parseConfig, retrySchedule } from './app-config.js';

const KEY = Buffer.alloc(32, 1).toString('base64');
const PG = 'postgresql://postgres@127.0.0.1:5432/switchyard';

describe('parseConfig', () => {
  let dataDir: string;
  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'switchyard-config-'));
  });
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  /** An environment that starts, plus the variables under test. */
  const parse = (env: Record<string, string | undefined>) => parseConfig({ DATA_DIR: dataDir, ...env });

  describe('defaults (SPEC §6)', () => {
    const config = () => parse({});

    it.each([
      ['PORT', 'port', 3000],
      ['HOST', 'host', '0.0.0.0'],
      ['PUBLIC_BASE_URL', 'publicBaseUrl', null],
      ['TRUST_PROXY', 'trustProxy', false],
      ['METRICS_TOKEN', 'metricsToken', null],
      ['RATE_LIMIT_PER_MINUTE', 'rateLimitPerMinute', null],
      ['DATABASE_URL', 'databaseUrl', null],
      ['ADMIN_TOKEN', 'adminToken', null],
      ['ALLOW_HTTP_CALLBACKS', 'allowHttpCallbacks', false],
      ['CALLBACK_ALLOWED_HOSTS', 'callbackAllowedHosts', []],
      ['DELIVERY_TIMEOUT_MS', 'deliveryTimeoutMs', 10_000],
      [
        'DELIVERY_RETRY_SCHEDULE',
        'deliveryRetryScheduleMs',
        [0, 5e3, 300e3, 1800e3, 7200e3, 18000e3, 36000e3, 36000e3],
      ],
      ['SIGNATURE_HEADER', 'signatureHeader', 'x-switchyard-signature'],
      ['MIGRATE_ON_START', 'migrateOnStart', true],
      ['RETENTION_DAYS', 'retentionDays', 30],
      ['NODE_ENV', 'nodeEnv', 'development'],
      ['DATABASE_POOL_SIZE', 'databasePoolSize', 10],
      ['LOG_LEVEL', 'logLevel', 'info'],
      ['TOKEN_CACHE_TTL_MS', 'tokenCacheTtlMs', 10_000],
      ['DELIVERY_WORKER_ENABLED', 'deliveryWorkerEnabled', true],
    ] as const)('%s defaults to %j', (_variable, key, expected) => {
      expect(config()[key]).toEqual(expected);
    });

    it('treats an empty or blank value as unset', () => {
      const config = parse({ PORT: '', HOST: '  ', DATABASE_URL: '' });
      expect(config.port).toBe(3000);
      expect(config.host).toBe('0.0.0.0');
      expect(config.databaseUrl).toBeNull();
    });

    it('keeps data under ./data of the working directory', () => {
      const config = parseConfig({ SECRETS_KEY: KEY });
      expect(config.dataDir).toBe(resolve('data'));
    });
  });

  describe('accepted values', () => {
    it('parses every variable it is given', () => {
      const config = parse({
        NODE_ENV: 'production',
        PORT: '8080',
        HOST: 'localhost',
        PUBLIC_BASE_URL: 'https://switchyard.example.com/base/',
        TRUST_PROXY: 'true',
        METRICS_TOKEN: 'scrape-me',
        RATE_LIMIT_PER_MINUTE: '600',
        DATABASE_URL: PG,
        DATABASE_POOL_SIZE: '4',
        SECRETS_KEY: KEY,
        ADMIN_TOKEN: 'a'.repeat(16),
        ALLOW_HTTP_CALLBACKS: '1',
        CALLBACK_ALLOWED_HOSTS: '127.0.0.1, 10.0.0.0/8,receiver.internal',
        DELIVERY_TIMEOUT_MS: '2500',
        DELIVERY_RETRY_SCHEDULE: '0,250ms,5,1d',
        SIGNATURE_HEADER: 'X-Seed-Signature',
        MIGRATE_ON_START: 'false',
        RETENTION_DAYS: '7',
        LOG_LEVEL: 'debug',
        TOKEN_CACHE_TTL_MS: '0',
      });
      expect(config).toMatchObject({
        nodeEnv: 'production',
        port: 8080,
        host: 'localhost',
        publicBaseUrl: 'https://switchyard.example.com/base',
        trustProxy: true,
        metricsToken: 'scrape-me',
        rateLimitPerMinute: 600,
        databaseUrl: PG,
        databasePoolSize: 4,
        adminToken: 'a'.repeat(16),
        allowHttpCallbacks: true,
        callbackAllowedHosts: ['127.0.0.1', '10.0.0.0/8', 'receiver.internal'],
        deliveryTimeoutMs: 2500,
        deliveryRetryScheduleMs: [0, 250, 5000, 86_400_000],
        signatureHeader: 'x-seed-signature',
        migrateOnStart: false,
        retentionDays: 7,
        logLevel: 'debug',
        tokenCacheTtlMs: 0,
      });
      expect(config.secretsKey).toEqual(Buffer.alloc(32, 1));
    });

    it('reads the SPEC retry schedule as milliseconds, a bare number being seconds', () => {
      expect(retrySchedule('0,5s,5m,30m,2h,5h,10h,10h')).toEqual([
        0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000,
      ]);
      expect(retrySchedule('30')).toEqual([30_000]);
    });

    it('takes HOST as free text', () => {
      expect(parse({ HOST: '::' }).host).toBe('::');
    });
  });

  describe('refusals name the variable', () => {
    it.each([
      ['PORT', { PORT: 'abc' }],
      ['PORT', { PORT: '65536' }],
      ['PORT', { PORT: '-1' }],
      ['PUBLIC_BASE_URL', { PUBLIC_BASE_URL: 'switchyard.example.com' }],
      ['PUBLIC_BASE_URL', { PUBLIC_BASE_URL: 'ftp://switchyard.example.com' }],
      ['PUBLIC_BASE_URL', { PUBLIC_BASE_URL: 'https://switchyard.example.com/?x=1' }],
      ['TRUST_PROXY', { TRUST_PROXY: 'yes' }],
      ['RATE_LIMIT_PER_MINUTE', { RATE_LIMIT_PER_MINUTE: '0' }],
      ['RATE_LIMIT_PER_MINUTE', { RATE_LIMIT_PER_MINUTE: '10/s' }],
      ['DATABASE_URL', { DATABASE_URL: 'mysql://root@localhost/db' }],
      ['DATABASE_URL', { DATABASE_URL: 'not a url' }],
      ['DATABASE_POOL_SIZE', { DATABASE_POOL_SIZE: '1' }],
      ['ADMIN_TOKEN', { ADMIN_TOKEN: 'short' }],
      ['ALLOW_HTTP_CALLBACKS', { ALLOW_HTTP_CALLBACKS: 'maybe' }],
      ['CALLBACK_ALLOWED_HOSTS', { CALLBACK_ALLOWED_HOSTS: '127.0.0.1,10.0.0.0/99' }],
      ['CALLBACK_ALLOWED_HOSTS', { CALLBACK_ALLOWED_HOSTS: 'http://receiver' }],
      ['DELIVERY_TIMEOUT_MS', { DELIVERY_TIMEOUT_MS: '10s' }],
      ['DELIVERY_TIMEOUT_MS', { DELIVERY_TIMEOUT_MS: '50' }],
      ['DELIVERY_RETRY_SCHEDULE', { DELIVERY_RETRY_SCHEDULE: '5x' }],
      ['DELIVERY_RETRY_SCHEDULE', { DELIVERY_RETRY_SCHEDULE: '0,,5s' }],
      ['DELIVERY_RETRY_SCHEDULE', { DELIVERY_RETRY_SCHEDULE: '-5s' }],
      ['DELIVERY_LEASE_MS', { DELIVERY_TIMEOUT_MS: '20000', DELIVERY_LEASE_MS: '20000' }],
      ['DELIVERY_CONCURRENCY', { DELIVERY_CONCURRENCY: '0' }],
      ['SHUTDOWN_GRACE_MS', { SHUTDOWN_GRACE_MS: '5s' }],
      ['DELIVERY_WORKER_ENABLED', { DELIVERY_WORKER_ENABLED: 'no' }],
      ['SIGNATURE_HEADER', { SIGNATURE_HEADER: 'x signature' }],
      ['SIGNATURE_HEADER', { SIGNATURE_HEADER: 'webhook-signature' }],
      ['MIGRATE_ON_START', { MIGRATE_ON_START: 'sometimes' }],
      ['RETENTION_DAYS', { RETENTION_DAYS: '0' }],
      ['RETENTION_DAYS', { RETENTION_DAYS: '1.5' }],
      ['LOG_LEVEL', { LOG_LEVEL: 'verbose' }],
      ['TOKEN_CACHE_TTL_MS', { TOKEN_CACHE_TTL_MS: 'forever' }],
      ['SECRETS_KEY', { SECRETS_KEY: Buffer.alloc(16).toString('base64') }],
      ['SECRETS_KEY', { SECRETS_KEY: Buffer.alloc(33).toString('base64') }],
      ['SECRETS_KEY', { SECRETS_KEY: 'not base64 at all!' }],
      ['SECRETS_KEY', { DATABASE_URL: PG }],
      ['SECRETS_KEY', { NODE_ENV: 'production' }],
    ])('%s: %j', (variable, env) => {
      const error = catchConfigError(() => parse(env));
      expect(error.variable).toBe(variable);
      expect(error.message).toContain(variable);
    });

    it('names the offending value so the operator can find it', () => {
      expect(catchConfigError(() => parse({ PORT: 'abc' })).message).toContain('"abc"');
    });
  });

  describe('SECRETS_KEY in development on the embedded database', () => {
    it('generates a key file once, private to its owner, and reuses it', () => {
      const first = parse({});
      const path = join(dataDir, 'secrets.key');
      expect(first.secretsKey).toHaveLength(32);
      expect(Buffer.from(readFileSync(path, 'utf8').trim(), 'base64')).toEqual(first.secretsKey);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      expect(parse({}).secretsKey).toEqual(first.secretsKey);
    });

    it('refuses a key file that does not hold 32 bytes', () => {
      writeFileSync(join(dataDir, 'secrets.key'), 'c2hvcnQ=\n');
      expect(catchConfigError(() => parse({})).variable).toBe('SECRETS_KEY');
    });

    it('prefers SECRETS_KEY over the file and writes none', () => {
      expect(parse({ SECRETS_KEY: KEY }).secretsKey).toEqual(Buffer.alloc(32, 1));
      expect(() => statSync(join(dataDir, 'secrets.key'))).toThrow();
    });
  });
});

describe('.env.example', () => {
  const example = parseEnv(readFileSync(resolve(import.meta.dirname, '../../.env.example'), 'utf8'));

  it('lists every variable parseConfig reads, and nothing else', () => {
    const read = new Set<string>();
    const recording = new Proxy({ SECRETS_KEY: KEY } as Record<string, string | undefined>, {
      get: (target, name: string) => {
        read.add(name);
        return target[name];
      },
    });
    parseConfig(recording);
    expect(Object.keys(example).sort()).toEqual([...read].sort());
  });

  it('states the defaults: parsing it as written gives the same config as parsing nothing', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'switchyard-config-'));
    try {
      const env = { DATA_DIR: dataDir, SECRETS_KEY: KEY };
      expect(parseConfig({ ...example, ...env })).toEqual(parseConfig(env));
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

function catchConfigError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError, but the configuration was accepted');
}
