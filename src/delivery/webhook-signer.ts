import { createHmac, createSecretKey, type KeyObject, randomBytes } from 'node:crypto';

/**
 * Signs deliveries the Standard Webhooks way (https://www.standardwebhooks.com) and, under the same key, the
 * older seed scheme (hex HMAC of the raw body) that existing receivers still check. Pure functions: the caller
 * picks the secrets (every currently valid one, newest first) and the attempt's timestamp.
 */

export interface SignedHeaders {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
  [hexHeader: string]: string;
}

const SECRET_PREFIX = 'whsec_';

/** The HMAC key of a `whsec_<base64>` secret: the base64-decoded part after the prefix. */
export function secretKey(secret: string): Buffer {
  if (!secret.startsWith(SECRET_PREFIX)) throw new Error('signing secret must start with whsec_');
  const encoded = secret.slice(SECRET_PREFIX.length);
  const key = Buffer.from(encoded, 'base64');
  // Buffer.from skips characters it does not understand; a damaged secret must not sign with a different key.
  if (key.length === 0 || key.toString('base64').replace(/=+$/, '') !== encoded.replace(/=+$/, '')) {
    throw new Error('signing secret is not whsec_ followed by base64');
  }
  return key;
}

/**
 * Prepared HMAC keys by secret: every signature would otherwise re-import its key (about 5 % of a
 * delivery's CPU in the cron burst profile). Bounded; cleared when full.
 */
const preparedKeys = new Map<string, KeyObject>();
const MAX_PREPARED_KEYS = 10_000;

function preparedKey(secret: string): KeyObject {
  let key = preparedKeys.get(secret);
  if (!key) {
    if (preparedKeys.size >= MAX_PREPARED_KEYS) preparedKeys.clear();
    key = createSecretKey(secretKey(secret));
    preparedKeys.set(secret, key);
  }
  return key;
}

/**
 * The headers that sign one attempt. `webhook-signature` carries `v1,<base64>` and the hex header `<hex>`, one per
 * secret in the order given, so a receiver holding any still-valid secret verifies during a rotation.
 */
export function signWebhook(input: {
  webhookId: string;
  timestampSeconds: number;
  body: string;
  secrets: readonly string[];
  hexHeaderName: string;
}): SignedHeaders {
  const { webhookId, timestampSeconds, body, secrets, hexHeaderName } = input;
  if (secrets.length === 0) throw new Error('a delivery needs at least one signing secret');
  if (!Number.isSafeInteger(timestampSeconds)) throw new Error('webhook timestamp must be whole unix seconds');
  // Both schemes sign the UTF-8 bytes of the body: exactly what goes on the wire.
  const bodyBytes = Buffer.from(body, 'utf8');
  const keys = secrets.map(preparedKey);
  const standard = keys.map(
    (key) =>
      'v1,' + createHmac('sha256', key).update(`${webhookId}.${timestampSeconds}.`).update(bodyBytes).digest('base64'),
  );
  const hex = keys.map((key) => createHmac('sha256', key).update(bodyBytes).digest('hex'));
  return {
    'webhook-id': webhookId,
    'webhook-timestamp': String(timestampSeconds),
    'webhook-signature': standard.join(' '),
    [hexHeaderName.toLowerCase()]: hex.join(' '),
  };
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * `msg_` + a ULID: 48 bits of millisecond time then 80 random bits, 26 Crockford base32 characters. Chosen over
 * pure randomness because ids sort by creation time (readable logs, index locality) while 80 random bits per
 * millisecond keep collisions out of reach; the alphabet is safe in headers, URLs and file names.
 */
export function newWebhookId(now: number = Date.now()): string {
  let value = (BigInt(now) << 80n) | BigInt('0x' + randomBytes(10).toString('hex'));
  let id = '';
  for (let i = 0; i < 26; i++) {
    id = CROCKFORD[Number(value & 31n)] + id;
    value >>= 5n;
  }
  return 'msg_' + id;
}
