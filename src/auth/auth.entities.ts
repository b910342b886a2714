import { type Opt } from '@mikro-orm/core';
import { Entity, PrimaryKey, Property } from '@mikro-orm/decorators/legacy';

@Entity({ tableName: 'machine_users' })
export class MachineUser {
  @PrimaryKey({ type: 'uuid' })
  id!: string;

  @Property({ type: 'uuid' })
  tenantId!: string;

  @Property({ type: 'text' })
  name!: string;

  @Property({ type: 'text' })
  username!: string;

  @Property({ type: 'boolean' })
  enabled: Opt<boolean> = true;

  @Property({ type: 'string[]', columnType: 'text[]' })
  roles: Opt<string[]> = ['backend'];

  @Property({ type: 'datetime', columnType: 'timestamptz' })
  createdAt: Opt<Date> = new Date();

  @Property({ type: 'datetime', columnType: 'timestamptz', onUpdate: () => new Date() })
  updatedAt: Opt<Date> = new Date();
}

@Entity({ tableName: 'machine_user_tokens' })
export class MachineUserToken {
  @PrimaryKey({ type: 'uuid' })
  id!: string;

  @Property({ type: 'uuid' })
  tenantId!: string;

  @Property({ type: 'uuid' })
  machineUserId!: string;

  @Property({ type: 'uint8array', columnType: 'bytea' })
  tokenHash!: Uint8Array;

  @Property({ type: 'text' })
  prefix!: string;

  @Property({ type: 'datetime', columnType: 'timestamptz' })
  createdAt: Opt<Date> = new Date();

  @Property({ type: 'datetime', columnType: 'timestamptz', nullable: true })
  lastUsedAt: Opt<Date> | null = null;

  @Property({ type: 'datetime', columnType: 'timestamptz', nullable: true })
  revokedAt: Opt<Date> | null = null;
}
