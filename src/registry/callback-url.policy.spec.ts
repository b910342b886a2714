import { randomBytes } from 'node:crypto';
import { parseConfig } from '../config/app-config.js';
import type { Resolver } from '../http/address-guard.js';
import { CallbackUrlPolicy } from './callback-url.policy.js';

// Hostnames are where the injected resolver matters; the e2e tests can only use address literals.
const DNS: Record<string, string[]> = {
  'hooks.example.com': ['93.184.215.14'],
  'internal.example.com': ['10.0.0.7'],
  'split.example.com': ['93.184.215.14', '192.168.1.1'],
};
const fakeResolver: Resolver = async (hostname) => {
  const addresses = DNS[hostname];
  if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
  return addresses;
};

function policy(env: Record<string, string> = {}): CallbackUrlPolicy {
  const config = parseConfig({ SECRETS_KEY: randomBytes(32).toString('base64'), ...env });
  return new CallbackUrlPolicy(config, fakeResolver);
}

describe('CallbackUrlPolicy', () => {
  it('accepts a hostname whose every address is public', async () => {
    await expect(policy().assertAcceptable('https://hooks.example.com/x')).resolves.toBeUndefined();
  });

  it.each([
    ['resolves to a private address', 'https://internal.example.com/x', 'CALLBACK_URL_FORBIDDEN'],
    ['has one private address among public ones', 'https://split.example.com/x', 'CALLBACK_URL_FORBIDDEN'],
    ['does not resolve', 'https://nowhere.example.com/x', 'INVALID_URL'],
  ])('refuses a hostname that %s', async (_case, url, code) => {
    await expect(policy().assertAcceptable(url)).rejects.toMatchObject({ code, statusCode: 400 });
  });

  it('lets CALLBACK_ALLOWED_HOSTS exempt a range or a name', async () => {
    await expect(
      policy({ CALLBACK_ALLOWED_HOSTS: '10.0.0.0/8' }).assertAcceptable('https://internal.example.com/x'),
    ).resolves.toBeUndefined();
    await expect(
      policy({ CALLBACK_ALLOWED_HOSTS: 'internal.example.com' }).assertAcceptable('https://internal.example.com/x'),
    ).resolves.toBeUndefined();
  });

  it('turns an over-long URL into VALIDATION_FAILED naming the given field', async () => {
    const url = 'https://hooks.example.com/' + 'p'.repeat(2048);
    await expect(policy().assertAcceptable(url, 'steps[0].invocationMethod.url')).rejects.toMatchObject({
      code: 'VALIDATION_FAILED',
      details: { errors: [{ field: 'steps[0].invocationMethod.url', message: expect.any(String) }] },
    });
  });
});
