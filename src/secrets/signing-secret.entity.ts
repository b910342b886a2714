import { type Opt } from '@mikro-orm/core';
import { Entity, PrimaryKey, Property } from '@mikro-orm/decorators/legacy';

export type SigningSecretOwnerType = 'backend' | 'application';

/** A signing secret, encrypted at rest; rotated secrets keep signing until `expiresAt`. */
@Entity({ tableName: 'signing_secrets' })
export class SigningSecret {
  @PrimaryKey({ type: 'uuid' })
  id!: string;

  @Property({ type: 'uuid' })
  tenantId!: string;

  @Property({ type: 'text' })
  ownerType!: SigningSecretOwnerType;

  @Property({ type: 'uuid' })
  ownerId!: string;

  @Property({ type: 'text' })
  ciphertext!: string;

  @Property({ type: 'datetime', columnType: 'timestamptz' })
  createdAt: Opt<Date> = new Date();

  @Property({ type: 'datetime', columnType: 'timestamptz', nullable: true })
  expiresAt: Opt<Date> | null = null;
}
