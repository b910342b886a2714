import { timingSafeEqual } from 'node:crypto';
import { Injectable, Logger } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import { AppConfig } from '../config/app-config.js';
import { MachinePrincipal, type Principal } from './principal.js';
import { hashToken, looksLikeToken } from './token-codec.js';

interface CachedToken {
  principal: MachinePrincipal;
  expiresAt: number;
  lastUsedWrittenAt: number;
}

const MAX_CACHED_TOKENS = 10_000;
const LAST_USED_WRITE_INTERVAL_MS = 60_000;

/**
 * Turns a bearer token into a principal. Verified machine tokens are cached for
 * `TOKEN_CACHE_TTL_MS` (default 10 s) so most requests cost no query: a revocation or a
 * disabled user takes effect at once on the replica that made the change and within that TTL
 * on every other replica. `lastUsedAt` is written at most once a minute per token.
 */
@Injectable()
export class TokenVerifier {
  private readonly logger = new Logger(TokenVerifier.name);
  private readonly cache = new Map<string, CachedToken>();
  private readonly adminTokenHash: Buffer | null;
  /** Bumped by every eviction, so a load that was already running cannot re-cache what was just revoked. */
  private evictions = 0;

  constructor(
    private readonly em: EntityManager,
    private readonly config: AppConfig,
  ) {
    this.adminTokenHash = config.adminToken ? hashToken(config.adminToken) : null;
  }

  async verify(token: string): Promise<Principal | null> {
    if (this.isAdminToken(token)) return { kind: 'admin' };
    return this.verifyMachineToken(token);
  }

  async verifyMachineToken(token: string): Promise<MachinePrincipal | null> {
    if (!looksLikeToken(token)) return null;
    const hash = hashToken(token);
    const key = hash.toString('base64');
    const now = Date.now();
    let entry = this.cache.get(key);
    if (!entry || entry.expiresAt <= now) {
      // Carried over from the expired entry: the TTL is shorter than the lastUsedAt interval,
      // and a reload must not reset the once-a-minute write.
      const lastUsedWrittenAt = entry?.lastUsedWrittenAt ?? 0;
      this.cache.delete(key);
      const evictionsBefore = this.evictions;
      const principal = await this.load(hash);
      if (!principal) return null;
      entry = { principal, expiresAt: now + this.config.tokenCacheTtlMs, lastUsedWrittenAt };
      if (this.config.tokenCacheTtlMs > 0 && evictionsBefore === this.evictions) this.remember(key, entry);
    }
    if (now - entry.lastUsedWrittenAt >= LAST_USED_WRITE_INTERVAL_MS) {
      entry.lastUsedWrittenAt = now;
      this.recordUse(entry.principal.tokenId);
    }
    return entry.principal;
  }

  forgetToken(tokenId: string): void {
    this.evictions++;
    for (const [key, entry] of this.cache) if (entry.principal.tokenId === tokenId) this.cache.delete(key);
  }

  forgetMachineUser(machineUserId: string): void {
    this.evictions++;
    for (const [key, entry] of this.cache) if (entry.principal.machineUserId === machineUserId) this.cache.delete(key);
  }

  private isAdminToken(token: string): boolean {
    return this.adminTokenHash !== null && timingSafeEqual(hashToken(token), this.adminTokenHash);
  }

  private async load(hash: Buffer): Promise<MachinePrincipal | null> {
    const rows = await this.em.getConnection().execute<TokenRow[]>(
      `select t.id as token_id, u.id as machine_user_id, u.tenant_id, u.username, u.name, u.roles
         from machine_user_tokens t
         join machine_users u on u.id = t.machine_user_id
        where t.token_hash = ? and t.revoked_at is null and u.enabled`,
      [hash],
    );
    const row = rows[0];
    if (!row) return null;
    return new MachinePrincipal(row.tenant_id, row.machine_user_id, row.token_id, row.username, row.name, row.roles);
  }

  private remember(key: string, entry: CachedToken): void {
    if (this.cache.size >= MAX_CACHED_TOKENS) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.cache.set(key, entry);
  }

  /** Fire-and-forget: a lost `lastUsedAt` write must never fail the request it describes. */
  private recordUse(tokenId: string): void {
    this.em
      .getConnection()
      .execute(
        `update machine_user_tokens set last_used_at = now()
          where id = ? and (last_used_at is null or last_used_at < now() - interval '1 minute')`,
        [tokenId],
        'run',
      )
      .catch((error: unknown) => this.logger.warn(`could not record token use: ${(error as Error).message}`));
  }
}

interface TokenRow {
  token_id: string;
  machine_user_id: string;
  tenant_id: string;
  username: string;
  name: string;
  roles: string[];
}
