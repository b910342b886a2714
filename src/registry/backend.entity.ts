import { type Opt } from '@mikro-orm/core';
import { Entity, PrimaryKey, Property } from '@mikro-orm/decorators/legacy';

@Entity({ tableName: 'backends' })
export class Backend {
  @PrimaryKey({ type: 'uuid' })
  id!: string;

  @Property({ type: 'uuid' })
  tenantId!: string;

  @Property({ type: 'uuid' })
  machineUserId!: string;

  @Property({ type: 'text' })
  name!: string;

  @Property({ type: 'text' })
  callbackUrl!: string;

  @Property({ type: 'text', nullable: true })
  description: Opt<string> | null = null;

  @Property({ type: 'string[]', columnType: 'text[]' })
  runKeys: Opt<string[]> = [];

  @Property({ type: 'boolean' })
  enabled: Opt<boolean> = true;

  /** Per-attempt timeout of deliveries to this backend; null: DELIVERY_TIMEOUT_MS. */
  @Property({ type: 'integer', nullable: true })
  timeoutMs: Opt<number> | null = null;

  @Property({ type: 'datetime', columnType: 'timestamptz' })
  createdAt: Opt<Date> = new Date();

  @Property({ type: 'datetime', columnType: 'timestamptz', onUpdate: () => new Date() })
  updatedAt: Opt<Date> = new Date();
}
