import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseAllowedHostEntry } from '../http/address-guard.js';

/** Raised when the environment cannot start the service; the message names the variable. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`Invalid configuration: ${variable} ${problem}`);
    this.name = 'ConfigError';
  }
}

/** The one validated configuration object. Nothing else in the service reads process.env. */
export class AppConfig {
  nodeEnv!: string;
  port!: number;
  host!: string;
  publicBaseUrl!: string | null;
  trustProxy!: boolean;
  metricsToken!: string | null;
  rateLimitPerMinute!: number | null;
  /** 32 bytes encrypting signing secrets at rest. */
  secretsKey!: Buffer;
  /** Null means: run the embedded PostgreSQL (PGlite) under dataDir. */
  databaseUrl!: string | null;
  databasePoolSize!: number;
  dataDir!: string;
  adminToken!: string | null;
  allowHttpCallbacks!: boolean;
  callbackAllowedHosts!: string[];
  deliveryTimeoutMs!: number;
  /** Delay before each attempt in milliseconds; its length is the attempt count. */
  deliveryRetryScheduleMs!: number[];
  /** How long a claimed delivery stays ours before another replica may take it. */
  deliveryLeaseMs!: number;
  /** Deliveries one replica sends at once, and at most per target (fair share). */
  deliveryConcurrency!: number;
  deliveryPerTargetConcurrency!: number;
  /** Poll interval of the delivery worker; LISTEN/NOTIFY wakes it sooner on a real server. */
  deliveryPollMs!: number;
  /** How long shutdown waits for in-flight attempts before releasing them to other replicas. */
  shutdownGraceMs!: number;
  /** False: this replica serves the API and enqueues, but never claims or sends deliveries. */
  deliveryWorkerEnabled!: boolean;
  /** Run the cron scheduler on this replica (every replica may: slots still fire once). */
  schedulerEnabled!: boolean;
  /** How often each replica looks for due cron triggers. */
  schedulerTickMs!: number;
  /** A slot later than this counts as missed (misfirePolicy applies) rather than merely late. */
  misfireThresholdMs!: number;
  signatureHeader!: string;
  migrateOnStart!: boolean;
  retentionDays!: number;
  logLevel!: string;
  /** How long a verified token is trusted without asking the database (revocation delay on other replicas). */
  tokenCacheTtlMs!: number;
}

type Env = Record<string, string | undefined>;

const DEFAULT_RETRY_SCHEDULE = '0,5s,5m,30m,2h,5h,10h,10h';
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Parses the environment into an AppConfig, throwing ConfigError naming the first bad variable. */
export function parseConfig(env: Env): AppConfig {
  const read = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };
  const config = new AppConfig();
  config.nodeEnv = read('NODE_ENV') ?? 'development';
  config.port = integer(read, 'PORT', 3000, 0, 65535);
  config.host = read('HOST') ?? '0.0.0.0';
  config.publicBaseUrl = baseUrl(read, 'PUBLIC_BASE_URL');
  config.trustProxy = boolean(read, 'TRUST_PROXY', false);
  config.metricsToken = read('METRICS_TOKEN') ?? null;
  const rateLimit = read('RATE_LIMIT_PER_MINUTE');
  config.rateLimitPerMinute = rateLimit === undefined ? null : integer(read, 'RATE_LIMIT_PER_MINUTE', 0, 1, 10_000_000);
  config.databaseUrl = databaseUrl(read);
  config.databasePoolSize = integer(read, 'DATABASE_POOL_SIZE', 10, 2, 500);
  config.dataDir = resolve(read('DATA_DIR') ?? './data');
  config.adminToken = adminToken(read);
  config.allowHttpCallbacks = boolean(read, 'ALLOW_HTTP_CALLBACKS', false);
  config.callbackAllowedHosts = allowedHosts(read);
  config.deliveryTimeoutMs = integer(read, 'DELIVERY_TIMEOUT_MS', 10_000, 100, 300_000);
  config.deliveryRetryScheduleMs = retrySchedule(read('DELIVERY_RETRY_SCHEDULE') ?? DEFAULT_RETRY_SCHEDULE);
  config.deliveryLeaseMs = integer(read, 'DELIVERY_LEASE_MS', config.deliveryTimeoutMs + 15_000, 1_000, 3_600_000);
  if (config.deliveryLeaseMs <= config.deliveryTimeoutMs) {
    throw new ConfigError('DELIVERY_LEASE_MS', `must be longer than DELIVERY_TIMEOUT_MS (${config.deliveryTimeoutMs})`);
  }
  config.deliveryConcurrency = integer(read, 'DELIVERY_CONCURRENCY', 64, 1, 10_000);
  config.deliveryPerTargetConcurrency = integer(
    read,
    'DELIVERY_PER_TARGET_CONCURRENCY',
    Math.max(1, Math.ceil(config.deliveryConcurrency / 4)),
    1,
    10_000,
  );
  config.deliveryPollMs = integer(read, 'DELIVERY_POLL_MS', 1_000, 10, 60_000);
  config.shutdownGraceMs = integer(read, 'SHUTDOWN_GRACE_MS', 5_000, 0, 120_000);
  config.deliveryWorkerEnabled = boolean(read, 'DELIVERY_WORKER_ENABLED', true);
  config.schedulerEnabled = boolean(read, 'SCHEDULER_ENABLED', true);
  config.schedulerTickMs = integer(read, 'SCHEDULER_TICK_MS', 250, 10, 60_000);
  config.misfireThresholdMs = integer(read, 'MISFIRE_THRESHOLD_MS', 60_000, 1_000, 86_400_000);
  config.signatureHeader = signatureHeader(read);
  config.migrateOnStart = boolean(read, 'MIGRATE_ON_START', true);
  config.retentionDays = integer(read, 'RETENTION_DAYS', 30, 1, 36_500);
  config.logLevel = oneOf(read, 'LOG_LEVEL', LOG_LEVELS, 'info');
  config.tokenCacheTtlMs = integer(read, 'TOKEN_CACHE_TTL_MS', 10_000, 0, 300_000);
  config.secretsKey = secretsKey(read, config);
  return config;
}

function integer(
  read: (n: string) => string | undefined,
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const raw = read(name);
  if (raw === undefined) return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const value = Number(raw);
  if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function boolean(read: (n: string) => string | undefined, name: string, fallback: boolean): boolean {
  const raw = read(name);
  if (raw === undefined) return fallback;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw new ConfigError(name, `must be true or false, got "${raw}"`);
}

function oneOf(read: (n: string) => string | undefined, name: string, allowed: string[], fallback: string): string {
  const raw = read(name);
  if (raw === undefined) return fallback;
  if (!allowed.includes(raw)) throw new ConfigError(name, `must be one of ${allowed.join(', ')}, got "${raw}"`);
  return raw;
}

function baseUrl(read: (n: string) => string | undefined, name: string): string | null {
  const raw = read(name);
  if (raw === undefined) return null;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, `must be an absolute URL such as https://switchyard.example.com, got "${raw}"`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError(name, 'must use http or https');
  if (url.search || url.hash) throw new ConfigError(name, 'must not carry a query or fragment');
  return url.toString().replace(/\/+$/, '');
}

function databaseUrl(read: (n: string) => string | undefined): string | null {
  const raw = read('DATABASE_URL');
  if (raw === undefined) return null;
  try {
    const url = new URL(raw);
    if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') throw new Error('scheme');
  } catch {
    throw new ConfigError('DATABASE_URL', 'must be a postgres:// or postgresql:// connection string');
  }
  return raw;
}

function adminToken(read: (n: string) => string | undefined): string | null {
  const raw = read('ADMIN_TOKEN');
  if (raw === undefined) return null;
  // A guessable admin token would hand out every tenant: demand at least 128 bits' worth of text.
  if (raw.length < 16) throw new ConfigError('ADMIN_TOKEN', 'must be at least 16 characters long');
  return raw;
}

function allowedHosts(read: (n: string) => string | undefined): string[] {
  const raw = read('CALLBACK_ALLOWED_HOSTS');
  if (raw === undefined) return [];
  const entries = raw
    .split(',')
    .map((entry) => entry.trim())
    .filter(Boolean);
  for (const entry of entries) {
    if (!parseAllowedHostEntry(entry)) {
      throw new ConfigError('CALLBACK_ALLOWED_HOSTS', `has an entry that is no host, IP or CIDR: "${entry}"`);
    }
  }
  return entries;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `0,5s,5m,30m,2h` (a bare number is seconds) into milliseconds. */
export function retrySchedule(raw: string): number[] {
  const parts = raw.split(',').map((part) => part.trim());
  if (parts.length === 0 || parts.length > 50) {
    throw new ConfigError('DELIVERY_RETRY_SCHEDULE', 'must list between 1 and 50 delays');
  }
  return parts.map((part) => {
    const match = /^(\d+)(ms|s|m|h|d)?$/.exec(part);
    if (!match) {
      throw new ConfigError('DELIVERY_RETRY_SCHEDULE', `has "${part}", expected a delay like 0, 5s, 5m, 2h or 1d`);
    }
    return Number(match[1]) * DURATION_UNITS[match[2] ?? 's'];
  });
}

function signatureHeader(read: (n: string) => string | undefined): string {
  const raw = (read('SIGNATURE_HEADER') ?? 'x-switchyard-signature').toLowerCase();
  if (!/^[a-z0-9-]{1,100}$/.test(raw)) throw new ConfigError('SIGNATURE_HEADER', 'must be an HTTP header name');
  const reserved = ['webhook-id', 'webhook-timestamp', 'webhook-signature', 'content-type', 'user-agent'];
  if (reserved.includes(raw)) throw new ConfigError('SIGNATURE_HEADER', `must not be the standard header ${raw}`);
  return raw;
}

/**
 * SECRETS_KEY is mandatory wherever losing it would lose data silently: in production and
 * against an external database. Only the embedded default may mint one into the data dir,
 * because there the key and the data it protects live and die together.
 */
function secretsKey(read: (n: string) => string | undefined, config: AppConfig): Buffer {
  const raw = read('SECRETS_KEY');
  if (raw !== undefined) {
    const key = Buffer.from(raw, 'base64');
    if (key.length !== 32 || key.toString('base64').replace(/=+$/, '') !== raw.replace(/=+$/, '')) {
      throw new ConfigError('SECRETS_KEY', 'must be 32 bytes in base64 (e.g. `openssl rand -base64 32`)');
    }
    return key;
  }
  if (config.nodeEnv === 'production') {
    throw new ConfigError('SECRETS_KEY', 'is required when NODE_ENV=production (32 bytes in base64)');
  }
  if (config.databaseUrl !== null) {
    throw new ConfigError('SECRETS_KEY', 'is required with DATABASE_URL; only the embedded database generates one');
  }
  return loadOrCreateKeyFile(join(config.dataDir, 'secrets.key'));
}

function loadOrCreateKeyFile(path: string): Buffer {
  if (existsSync(path)) {
    // A truncated or hand-edited file must stop the start here, not fail every decryption later.
    const key = Buffer.from(readFileSync(path, 'utf8').trim(), 'base64');
    if (key.length !== 32) throw new ConfigError('SECRETS_KEY', `file ${path} does not hold 32 bytes in base64`);
    return key;
  }
  mkdirSync(resolve(path, '..'), { recursive: true });
  const key = randomBytes(32);
  writeFileSync(path, key.toString('base64') + '\n', { mode: 0o600 });
  return key;
}
