import { Logger } from '@nestjs/common';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { AppConfig } from '../config/app-config.js';
import { MachinePrincipal } from './principal.js';
import { generateToken, hashToken } from './token-codec.js';
import { TokenVerifier } from './token-verifier.js';

const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
const TTL_MS = 10_000;

interface Row {
  token_id: string;
  machine_user_id: string;
  tenant_id: string;
  username: string;
  name: string;
  roles: string[];
}

/**
 * A verifier over a fake connection that knows some tokens. `selects` and `updates` record what
 * reached the database, which is what the cache exists to spare.
 */
function setup(options: { ttlMs?: number } = {}) {
  const rows = new Map<string, Row>();
  const selects: Buffer[] = [];
  const updates: string[] = [];
  let failUpdates = false;
  let beforeSelectAnswers: (() => void) | null = null;
  const execute = vi.fn(async (sql: string, params: unknown[]) => {
    if (sql.trim().startsWith('select')) {
      const hash = params[0] as Buffer;
      selects.push(hash);
      const row = rows.get(hash.toString('hex'));
      beforeSelectAnswers?.();
      return row ? [row] : [];
    }
    updates.push(params[0] as string);
    if (failUpdates) throw new Error('connection reset');
    return { affectedRows: 1 };
  });
  const em = { getConnection: () => ({ execute }) } as unknown as EntityManager;
  const config = { adminToken: ADMIN_TOKEN, tokenCacheTtlMs: options.ttlMs ?? TTL_MS } as AppConfig;
  const verifier = new TokenVerifier(em, config);

  const issue = (machineUserId = 'user-1', tokenId = `token-${rows.size + 1}`) => {
    const token = generateToken();
    rows.set(hashToken(token).toString('hex'), {
      token_id: tokenId,
      machine_user_id: machineUserId,
      tenant_id: 'tenant-1',
      username: 'payment-service',
      name: 'Payment Service',
      roles: ['backend'],
    });
    return { token, tokenId };
  };
  return {
    verifier,
    selects,
    updates,
    issue,
    revoke: (token: string) => rows.delete(hashToken(token).toString('hex')),
    failUpdates: () => (failUpdates = true),
    /** Runs `action` while a select is on its way back, as a concurrent request would. */
    duringNextSelect: (action: () => void) => (beforeSelectAnswers = action),
  };
}

describe('TokenVerifier', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2025-12-01T10:00:00Z'));
  });
  afterEach(() => vi.useRealTimers());

  it('recognises the admin token without touching the database', async () => {
    const { verifier, selects } = setup();
    expect(await verifier.verify(ADMIN_TOKEN)).toEqual({ kind: 'admin' });
    expect(selects).toHaveLength(0);
  });

  it('refuses text that cannot be a token without a query', async () => {
    const { verifier, selects } = setup();
    expect(await verifier.verify('not a token')).toBeNull();
    expect(await verifier.verify(ADMIN_TOKEN + 'x')).toBeNull();
    expect(selects).toHaveLength(0);
  });

  it('looks a token up by its hash and answers the machine user it belongs to', async () => {
    const { verifier, selects, issue } = setup();
    const { token, tokenId } = issue('user-7');
    const principal = await verifier.verify(token);
    expect(principal).toBeInstanceOf(MachinePrincipal);
    expect(principal).toMatchObject({ tenantId: 'tenant-1', machineUserId: 'user-7', tokenId, roles: ['backend'] });
    expect(selects).toEqual([hashToken(token)]);
  });

  it('answers a second verification from the cache, without a second query', async () => {
    const { verifier, selects, issue } = setup();
    const { token } = issue();
    const first = await verifier.verify(token);
    vi.advanceTimersByTime(TTL_MS - 1);
    expect(await verifier.verify(token)).toBe(first);
    expect(selects).toHaveLength(1);
  });

  it('asks again once the TTL has passed, which is how other replicas learn of a revocation', async () => {
    const { verifier, selects, issue, revoke } = setup();
    const { token } = issue();
    await verifier.verify(token);
    revoke(token);
    expect(await verifier.verify(token)).not.toBeNull();
    vi.advanceTimersByTime(TTL_MS);
    expect(await verifier.verify(token)).toBeNull();
    expect(selects).toHaveLength(2);
  });

  it('does not cache unknown tokens, so a freshly issued one works at once', async () => {
    const { verifier, selects } = setup();
    const token = generateToken();
    expect(await verifier.verify(token)).toBeNull();
    expect(await verifier.verify(token)).toBeNull();
    expect(selects).toHaveLength(2);
  });

  it('caches nothing with a TTL of 0', async () => {
    const { verifier, selects, issue } = setup({ ttlMs: 0 });
    const { token } = issue();
    await verifier.verify(token);
    await verifier.verify(token);
    expect(selects).toHaveLength(2);
  });

  describe('lastUsedAt', () => {
    it('is written on first use, then at most once a minute per token, across cache reloads', async () => {
      const { verifier, updates, selects, issue } = setup();
      const { token, tokenId } = issue();
      await verifier.verify(token);
      expect(updates).toEqual([tokenId]);
      for (const step of [1_000, 15_000, 30_000]) {
        vi.advanceTimersByTime(step);
        await verifier.verify(token);
      }
      expect(selects.length).toBeGreaterThan(1);
      expect(updates).toEqual([tokenId]);
      vi.advanceTimersByTime(14_000);
      await verifier.verify(token);
      expect(updates).toEqual([tokenId, tokenId]);
    });

    it('is tracked per token', async () => {
      const { verifier, updates, issue } = setup();
      const first = issue();
      const second = issue();
      await verifier.verify(first.token);
      await verifier.verify(second.token);
      await verifier.verify(first.token);
      expect(updates).toEqual([first.tokenId, second.tokenId]);
    });

    it('never fails the request when the write fails', async () => {
      const { verifier, issue, failUpdates } = setup();
      const warn = vi.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
      failUpdates();
      const { token } = issue();
      await expect(verifier.verify(token)).resolves.not.toBeNull();
      await vi.waitFor(() => expect(warn).toHaveBeenCalledWith(expect.stringContaining('connection reset')));
      warn.mockRestore();
    });
  });

  describe('eviction on this replica', () => {
    it('forgetToken drops that token only', async () => {
      const { verifier, selects, issue, revoke } = setup();
      const revoked = issue();
      const kept = issue();
      await verifier.verify(revoked.token);
      await verifier.verify(kept.token);
      revoke(revoked.token);
      verifier.forgetToken(revoked.tokenId);
      expect(await verifier.verify(revoked.token)).toBeNull();
      expect(await verifier.verify(kept.token)).not.toBeNull();
      expect(selects).toHaveLength(3);
    });

    it('forgetMachineUser drops every token of that user only', async () => {
      const { verifier, selects, issue } = setup();
      const [a1, a2, b] = [issue('user-a'), issue('user-a'), issue('user-b')];
      for (const { token } of [a1, a2, b]) await verifier.verify(token);
      verifier.forgetMachineUser('user-a');
      for (const { token } of [a1, a2, b]) await verifier.verify(token);
      expect(selects).toHaveLength(5);
    });

    it('does not let a lookup that was running during a revocation re-cache the token', async () => {
      const { verifier, selects, issue, revoke, duringNextSelect } = setup();
      const { token, tokenId } = issue();
      // The select has read the row; the admin revokes before it returns.
      duringNextSelect(() => {
        revoke(token);
        verifier.forgetToken(tokenId);
        duringNextSelect(() => undefined);
      });
      expect(await verifier.verify(token)).not.toBeNull();
      expect(await verifier.verify(token)).toBeNull();
      expect(selects).toHaveLength(2);
    });
  });
});
