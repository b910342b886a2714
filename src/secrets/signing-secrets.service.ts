import { randomBytes, randomUUID } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { EntityManager } from '@mikro-orm/postgresql';
import { AppConfig } from '../config/app-config.js';
import { SecretBox } from './secret-box.js';
import { SigningSecret, type SigningSecretOwnerType } from './signing-secret.entity.js';

/** How long a rotated-out secret keeps signing, so receivers can roll over without a gap. */
export const ROTATION_OVERLAP_MS = 24 * 60 * 60 * 1000;

export interface SecretOwner {
  tenantId: string;
  ownerType: SigningSecretOwnerType;
  ownerId: string;
}

export function generateSigningSecret(): string {
  return 'whsec_' + randomBytes(32).toString('base64');
}

/**
 * Signing secrets of backends and applications. Methods that write take the caller's
 * EntityManager so the secret commits with the object it signs for.
 */
@Injectable()
export class SigningSecretsService {
  private readonly box: SecretBox;

  constructor(
    private readonly em: EntityManager,
    config: AppConfig,
  ) {
    this.box = new SecretBox(config.secretsKey);
  }

  /** Adds a first secret; returns its plaintext, to be shown once. */
  issue(em: EntityManager, owner: SecretOwner): string {
    const secret = generateSigningSecret();
    em.persist(
      em.create(SigningSecret, {
        id: randomUUID(),
        tenantId: owner.tenantId,
        ownerType: owner.ownerType,
        ownerId: owner.ownerId,
        ciphertext: this.box.seal(secret),
      }),
    );
    return secret;
  }

  /** Issues a new secret; those still valid keep signing for 24 h more at most. */
  async rotate(em: EntityManager, owner: SecretOwner): Promise<string> {
    const overlapEnd = new Date(Date.now() + ROTATION_OVERLAP_MS);
    await em.nativeUpdate(
      SigningSecret,
      { ownerId: owner.ownerId, $or: [{ expiresAt: null }, { expiresAt: { $gt: overlapEnd } }] },
      { expiresAt: overlapEnd },
    );
    return this.issue(em, owner);
  }

  /** Every secret that still signs, newest first. */
  async validSecrets(ownerId: string): Promise<string[]> {
    const rows = await this.em
      .fork()
      .find(
        SigningSecret,
        { ownerId, $or: [{ expiresAt: null }, { expiresAt: { $gt: new Date() } }] },
        { orderBy: { createdAt: 'desc', id: 'desc' } },
      );
    return rows.map((row) => this.box.open(row.ciphertext));
  }

  async removeAll(em: EntityManager, ownerId: string): Promise<void> {
    await em.nativeDelete(SigningSecret, { ownerId });
  }
}
