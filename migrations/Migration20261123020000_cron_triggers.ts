import { Migration } from '@mikro-orm/migrations';

/**
 * Cron triggers and their runs. `next_run_at` is stored and indexed (only for enabled
 * triggers), so the scheduler's tick reads the due head of one index whatever the number of
 * stored triggers. A scheduled slot fires at most once: runs are unique on
 * (trigger_id, scheduled_for) for scheduled runs; manual runs may share a second with one.
 */
export class Migration20261123020000_cron_triggers extends Migration {
  override up(): void {
    this.addSql(`
      create table cron_triggers (
        id uuid primary key,
        tenant_id uuid not null references tenants (id) on delete cascade deferrable initially deferred,
        application_id uuid not null references applications (id) on delete cascade deferrable initially deferred,
        name text not null,
        cron_expression text not null,
        timezone text not null,
        run_key text not null,
        enabled boolean not null,
        backend_id uuid,
        flow_id uuid,
        misfire_policy text not null check (misfire_policy in ('skip', 'fire_once', 'fire_all')),
        next_run_at timestamptz,
        created_at timestamptz not null,
        updated_at timestamptz not null,
        unique (application_id, name)
      );
      create index cron_triggers_due on cron_triggers (next_run_at) where enabled and next_run_at is not null;
      create index cron_triggers_application_list on cron_triggers (application_id, created_at desc, id desc);

      create table trigger_runs (
        id uuid primary key,
        tenant_id uuid not null references tenants (id) on delete cascade deferrable initially deferred,
        trigger_id uuid not null references cron_triggers (id) on delete cascade deferrable initially deferred,
        scheduled_for timestamptz not null,
        fired_at timestamptz not null,
        manual boolean not null,
        routing text not null check (routing in ('DELIVERIES', 'UNROUTED', 'FLOW_STARTED')),
        execution_id uuid,
        created_at timestamptz not null
      );
      create unique index trigger_runs_slot on trigger_runs (trigger_id, scheduled_for) where not manual;
      create index trigger_runs_trigger_list on trigger_runs (trigger_id, created_at desc, id desc);
    `);
  }
}
