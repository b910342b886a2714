import { type Opt } from '@mikro-orm/core';
import { Entity, PrimaryKey, Property } from '@mikro-orm/decorators/legacy';

export const MISFIRE_POLICIES = ['skip', 'fire_once', 'fire_all'] as const;
export type MisfirePolicy = (typeof MISFIRE_POLICIES)[number];

/** How a firing was routed; the run's outcome adds its deliveries' states to this. */
export type RunRouting = 'DELIVERIES' | 'UNROUTED' | 'FLOW_STARTED';

@Entity({ tableName: 'cron_triggers' })
export class CronTrigger {
  @PrimaryKey({ type: 'uuid' })
  id!: string;

  @Property({ type: 'uuid' })
  tenantId!: string;

  @Property({ type: 'uuid' })
  applicationId!: string;

  @Property({ type: 'text' })
  name!: string;

  @Property({ type: 'text' })
  cronExpression!: string;

  @Property({ type: 'text' })
  timezone!: string;

  @Property({ type: 'text' })
  runKey!: string;

  @Property({ type: 'boolean' })
  enabled: Opt<boolean> = true;

  @Property({ type: 'uuid', nullable: true })
  backendId: Opt<string> | null = null;

  @Property({ type: 'uuid', nullable: true })
  flowId: Opt<string> | null = null;

  @Property({ type: 'text' })
  misfirePolicy: Opt<MisfirePolicy> = 'fire_once';

  @Property({ type: 'datetime', columnType: 'timestamptz', nullable: true })
  nextRunAt: Opt<Date> | null = null;

  @Property({ type: 'datetime', columnType: 'timestamptz' })
  createdAt: Opt<Date> = new Date();

  @Property({ type: 'datetime', columnType: 'timestamptz', onUpdate: () => new Date() })
  updatedAt: Opt<Date> = new Date();
}

@Entity({ tableName: 'trigger_runs' })
export class TriggerRun {
  @PrimaryKey({ type: 'uuid' })
  id!: string;

  @Property({ type: 'uuid' })
  tenantId!: string;

  @Property({ type: 'uuid' })
  triggerId!: string;

  @Property({ type: 'datetime', columnType: 'timestamptz' })
  scheduledFor!: Date;

  @Property({ type: 'datetime', columnType: 'timestamptz' })
  firedAt!: Date;

  @Property({ type: 'boolean' })
  manual!: boolean;

  @Property({ type: 'text' })
  routing!: RunRouting;

  @Property({ type: 'uuid', nullable: true })
  executionId!: string | null;

  @Property({ type: 'datetime', columnType: 'timestamptz' })
  createdAt: Opt<Date> = new Date();
}
