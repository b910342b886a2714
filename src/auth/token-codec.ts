import { createHash, randomBytes } from 'node:crypto';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
export const TOKEN_PREFIX = 'sy_';
export const DISPLAY_PREFIX_LENGTH = 10;

export function base62(bytes: Uint8Array): string {
  let value = BigInt('0x' + (Buffer.from(bytes).toString('hex') || '0'));
  let text = '';
  while (value > 0n) {
    text = BASE62[Number(value % 62n)] + text;
    value /= 62n;
  }
  return text || '0';
}

/** `sy_` + base62 of 32 random bytes (256 bits): about 46 characters. */
export function generateToken(): string {
  return TOKEN_PREFIX + base62(randomBytes(32));
}

/**
 * SHA-256, not a password hash: the token carries 256 random bits, so there is nothing to
 * brute-force and no dictionary to slow down; a slow KDF would only add latency to every
 * request. A database leak yields hashes that cannot be turned back into tokens.
 */
export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

export function displayPrefix(token: string): string {
  return token.slice(0, DISPLAY_PREFIX_LENGTH);
}

export function looksLikeToken(token: string): boolean {
  return token.startsWith(TOKEN_PREFIX) && token.length <= 100 && /^[A-Za-z0-9_]+$/.test(token);
}
