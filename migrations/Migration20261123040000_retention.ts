import { Migration } from '@mikro-orm/migrations';

/**
 * Retention: indexes that let the purge find old finished rows without scanning, and a lease
 * row per maintenance job so exactly one replica at a time runs it (whichever claims it first;
 * a dead replica's lease simply expires).
 */
export class Migration20261123040000_retention extends Migration {
  override up(): void {
    this.addSql(`
      create index deliveries_finished on deliveries (finished_at) where finished_at is not null;
      create index trigger_runs_created on trigger_runs (created_at);
      create index executions_finished on executions (finished_at) where finished_at is not null;
      create index flow_events_trigger_at on flow_events (at) where execution_id is null;

      create table maintenance_leases (
        name text primary key,
        leased_until timestamptz not null,
        leased_by uuid,
        last_finished_at timestamptz
      );
      insert into maintenance_leases (name, leased_until) values ('retention', '-infinity');
    `);
  }
}
