import { type Opt } from '@mikro-orm/core';
import { Entity, PrimaryKey, Property } from '@mikro-orm/decorators/legacy';
import type { ExecutionStatus } from './execution-state.js';
import type { StepDefinition } from './flow-definition.js';

@Entity({ tableName: 'flows' })
export class Flow {
  @PrimaryKey({ type: 'uuid' })
  id!: string;

  @Property({ type: 'uuid' })
  tenantId!: string;

  @Property({ type: 'uuid' })
  applicationId!: string;

  @Property({ type: 'text' })
  name!: string;

  @Property({ type: 'integer' })
  version!: number;

  /** Where activation URLs point when PUBLIC_BASE_URL is unset: the base the flow was saved through. */
  @Property({ type: 'text', nullable: true })
  publicBaseUrl!: string | null;

  @Property({ type: 'datetime', columnType: 'timestamptz' })
  createdAt: Opt<Date> = new Date();

  @Property({ type: 'datetime', columnType: 'timestamptz' })
  updatedAt: Opt<Date> = new Date();
}

@Entity({ tableName: 'flow_versions' })
export class FlowVersion {
  @PrimaryKey({ type: 'uuid' })
  flowId!: string;

  @PrimaryKey({ type: 'integer' })
  version!: number;

  @Property({ type: 'uuid' })
  tenantId!: string;

  @Property({ type: 'json' })
  steps!: StepDefinition[];

  @Property({ type: 'datetime', columnType: 'timestamptz' })
  createdAt: Opt<Date> = new Date();
}

@Entity({ tableName: 'executions' })
export class Execution {
  @PrimaryKey({ type: 'uuid' })
  id!: string;

  @Property({ type: 'uuid' })
  tenantId!: string;

  @Property({ type: 'uuid' })
  flowId!: string;

  @Property({ type: 'integer' })
  flowVersion!: number;

  @Property({ type: 'text' })
  status!: ExecutionStatus;

  @Property({ type: 'integer', nullable: true })
  stepIndex!: number | null;

  /** Where the current step is: null on arrival, 'delaying' or 'delivering' while it waits. */
  @Property({ type: 'text', nullable: true })
  stepPhase!: 'delaying' | 'delivering' | null;

  @Property({ type: 'datetime', columnType: 'timestamptz', nullable: true })
  runAt!: Date | null;

  @Property({ type: 'uuid', nullable: true })
  awaitingDeliveryId!: string | null;

  @Property({ type: 'uuid', nullable: true })
  waitingTriggerId!: string | null;

  @Property({ type: 'datetime', columnType: 'timestamptz', nullable: true })
  waitingSince!: Date | null;

  @Property({ type: 'datetime', columnType: 'timestamptz', nullable: true })
  waitingDeadline!: Date | null;

  @Property({ type: 'json' })
  context!: ExecutionContext;

  @Property({ type: 'datetime', columnType: 'timestamptz' })
  createdAt: Opt<Date> = new Date();

  @Property({ type: 'datetime', columnType: 'timestamptz' })
  updatedAt: Opt<Date> = new Date();

  @Property({ type: 'datetime', columnType: 'timestamptz', nullable: true })
  finishedAt!: Date | null;
}

@Entity({ tableName: 'flow_events' })
export class FlowEvent {
  @PrimaryKey({ type: 'uuid' })
  id!: string;

  /** Insertion order: events of one transaction share their timestamp. */
  @Property({ type: 'bigint', persist: false })
  seq!: string;

  @Property({ type: 'uuid' })
  tenantId!: string;

  @Property({ type: 'uuid' })
  flowId!: string;

  @Property({ type: 'uuid', nullable: true })
  executionId!: string | null;

  @Property({ type: 'uuid', nullable: true })
  triggerId!: string | null;

  @Property({ type: 'datetime', columnType: 'timestamptz' })
  at!: Date;

  @Property({ type: 'text' })
  type!: string;

  @Property({ type: 'text', nullable: true })
  step!: string | null;

  @Property({ type: 'json', nullable: true })
  detail!: Record<string, unknown> | null;
}

/** SPEC §3: what templates, conditions and webhook bodies see. */
export interface ExecutionContext {
  run: { id: string };
  execution: { id: string; startedAt: string };
  flow: { id: string; name: string; version: number };
  tenant: { id: string; name: string; slug: string };
  project: { id: string; name: string; slug: string };
  application: { id: string; name: string; slug: string };
  trigger: { type: 'callback' | 'cron' | 'api'; at: string; data: unknown; user: unknown };
  steps: Record<
    string,
    { data?: unknown; user?: unknown; at: string; response?: { status: number | null; body: unknown } }
  >;
  callbacks: Record<string, string>;
}
