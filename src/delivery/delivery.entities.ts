import { type Opt } from '@mikro-orm/core';
import { Entity, PrimaryKey, Property } from '@mikro-orm/decorators/legacy';
import type { DeliveryStatus, OriginType } from './delivery.types.js';

/** Read model of the outbox; the engine writes these rows through DeliveryRepository's SQL. */
@Entity({ tableName: 'deliveries' })
export class Delivery {
  @PrimaryKey({ type: 'uuid' })
  id!: string;

  @Property({ type: 'uuid' })
  tenantId!: string;

  @Property({ type: 'text' })
  webhookId!: string;

  @Property({ type: 'uuid', nullable: true })
  backendId!: string | null;

  @Property({ type: 'uuid', nullable: true })
  applicationId!: string | null;

  @Property({ type: 'text' })
  url!: string;

  @Property({ type: 'text' })
  status!: DeliveryStatus;

  @Property({ type: 'integer' })
  attempts!: number;

  @Property({ type: 'datetime', columnType: 'timestamptz', nullable: true })
  nextAttemptAt!: Date | null;

  @Property({ type: 'integer', nullable: true })
  lastStatusCode!: number | null;

  @Property({ type: 'text', nullable: true })
  lastError!: string | null;

  @Property({ type: 'text' })
  originType!: OriginType;

  @Property({ type: 'uuid' })
  originId!: string;

  @Property({ type: 'datetime', columnType: 'timestamptz' })
  createdAt: Opt<Date> = new Date();

  @Property({ type: 'datetime', columnType: 'timestamptz', nullable: true })
  finishedAt!: Date | null;
}

@Entity({ tableName: 'delivery_attempts' })
export class DeliveryAttempt {
  @PrimaryKey({ type: 'uuid' })
  id!: string;

  @Property({ type: 'uuid' })
  tenantId!: string;

  @Property({ type: 'uuid' })
  deliveryId!: string;

  @Property({ type: 'integer' })
  attempt!: number;

  /** `host:pid` of the replica that made the attempt (operators' SQL; not part of the API). */
  @Property({ type: 'text', nullable: true })
  replica!: string | null;

  @Property({ type: 'datetime', columnType: 'timestamptz' })
  at!: Date;

  @Property({ type: 'integer', nullable: true })
  statusCode!: number | null;

  @Property({ type: 'integer' })
  durationMs!: number;

  @Property({ type: 'text', nullable: true })
  responseExcerpt!: string | null;

  @Property({ type: 'text', nullable: true })
  error!: string | null;
}
