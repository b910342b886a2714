import { base62, displayPrefix, generateToken, hashToken, looksLikeToken, TOKEN_PREFIX } from './token-codec.js';

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function fromBase62(text: string): bigint {
  return [...text].reduce((value, char) => value * 62n + BigInt(ALPHABET.indexOf(char)), 0n);
}

describe('base62', () => {
  it('encodes known values most significant digit first', () => {
    expect(base62(new Uint8Array([]))).toBe('0');
    expect(base62(new Uint8Array([0]))).toBe('0');
    expect(base62(new Uint8Array([61]))).toBe('z');
    expect(base62(new Uint8Array([62]))).toBe('10');
    expect(base62(new Uint8Array([1, 0]))).toBe('48'); // 256 = 4·62 + 8
  });

  it('fits any 32 bytes in at most 43 digits and loses nothing', () => {
    const max = new Uint8Array(32).fill(0xff);
    expect(base62(max)).toHaveLength(43);
    expect(fromBase62(base62(max))).toBe(2n ** 256n - 1n);
    const bytes = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff);
    expect(fromBase62(base62(bytes))).toBe(BigInt('0x' + Buffer.from(bytes).toString('hex')));
  });
});

describe('generateToken', () => {
  it('is sy_ and the base62 of 32 random bytes, different every time', () => {
    const tokens = Array.from({ length: 500 }, generateToken);
    for (const token of tokens) {
      expect(token).toMatch(/^sy_[0-9A-Za-z]{1,43}$/);
      expect(fromBase62(token.slice(TOKEN_PREFIX.length))).toBeLessThan(2n ** 256n);
    }
    expect(new Set(tokens).size).toBe(tokens.length);
    // 256 random bits: all but a vanishing share of tokens need 40 or more digits (SPEC's pattern).
    expect(tokens.filter((token) => token.length >= 43).length).toBeGreaterThan(400);
  });
});

describe('displayPrefix', () => {
  it('is the first 10 characters: sy_ and 7 digits, too few to guess the rest from', () => {
    const token = generateToken();
    expect(displayPrefix(token)).toBe(token.slice(0, 10));
    expect(displayPrefix(token)).toMatch(/^sy_[0-9A-Za-z]{7}$/);
  });
});

describe('hashToken', () => {
  it('is SHA-256 of the UTF-8 text, as 32 raw bytes, stable across calls', () => {
    const hash = hashToken('abc');
    expect(hash).toHaveLength(32);
    expect(hash.toString('hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    const token = generateToken();
    expect(hashToken(token).equals(hashToken(token))).toBe(true);
    expect(hashToken(token).equals(hashToken(token + 'x'))).toBe(false);
  });
});

describe('looksLikeToken', () => {
  it('accepts what generateToken makes', () => {
    for (let i = 0; i < 50; i++) expect(looksLikeToken(generateToken())).toBe(true);
  });

  it.each([
    ['no prefix', 'abcdefghijklmnop'],
    ['another prefix', 'sk_abcdefghijklmnop'],
    ['an upper-case prefix', 'SY_abcdefghijklmnop'],
    ['a dot', 'sy_abc.def'],
    ['a space', 'sy_abc def'],
    ['base64 padding', 'sy_abc='],
    ['over 100 characters', 'sy_' + 'a'.repeat(98)],
    ['an empty string', ''],
  ])('refuses %s without a database round trip', (_case, text) => {
    expect(looksLikeToken(text)).toBe(false);
  });
});
