import { Migration } from '@mikro-orm/migrations';

/**
 * Flows, their immutable versions, executions and their history. An execution is durable work:
 * `running` with `run_at` due is claimed by any replica (FOR UPDATE SKIP LOCKED; the row lock is
 * held while its steps advance, and dies with the replica's connection); `waiting` executions
 * are found by the trigger they wait at; a callback timeout is `waiting_deadline`, a delay is
 * `run_at` in the future. Idempotency keys of activations are rows too.
 */
export class Migration20261123030000_flows extends Migration {
  override up(): void {
    this.addSql(`
      create table flows (
        id uuid primary key,
        tenant_id uuid not null references tenants (id) on delete cascade deferrable initially deferred,
        application_id uuid not null references applications (id) on delete cascade deferrable initially deferred,
        name text not null,
        version integer not null,
        public_base_url text,
        created_at timestamptz not null,
        updated_at timestamptz not null,
        unique (application_id, name)
      );
      create index flows_application_list on flows (application_id, created_at desc, id desc);

      create table flow_versions (
        flow_id uuid not null references flows (id) on delete cascade deferrable initially deferred,
        version integer not null,
        tenant_id uuid not null,
        steps jsonb not null,
        created_at timestamptz not null,
        primary key (flow_id, version)
      );
      create index flow_versions_steps on flow_versions using gin (steps jsonb_path_ops);

      create table executions (
        id uuid primary key,
        tenant_id uuid not null references tenants (id) on delete cascade deferrable initially deferred,
        flow_id uuid not null references flows (id) on delete cascade deferrable initially deferred,
        flow_version integer not null,
        status text not null check (status in ('running', 'waiting', 'completed', 'failed', 'cancelled')),
        step_index integer,
        step_phase text check (step_phase in ('delaying', 'delivering')),
        run_at timestamptz,
        awaiting_delivery_id uuid,
        waiting_trigger_id uuid,
        waiting_since timestamptz,
        waiting_deadline timestamptz,
        context jsonb not null,
        created_at timestamptz not null,
        updated_at timestamptz not null,
        finished_at timestamptz
      );
      create index executions_runnable on executions (run_at) where status = 'running' and run_at is not null;
      create index executions_waiting on executions (waiting_trigger_id, waiting_since, id) where status = 'waiting';
      create index executions_deadlines on executions (waiting_deadline)
        where status = 'waiting' and waiting_deadline is not null;
      create index executions_flow_list on executions (flow_id, created_at desc, id desc);

      create table flow_events (
        id uuid primary key,
        seq bigint generated always as identity,
        tenant_id uuid not null,
        flow_id uuid not null references flows (id) on delete cascade deferrable initially deferred,
        execution_id uuid references executions (id) on delete cascade deferrable initially deferred,
        trigger_id uuid,
        at timestamptz not null,
        type text not null,
        step text,
        detail jsonb
      );
      create index flow_events_execution on flow_events (execution_id, seq) where execution_id is not null;
      create index flow_events_trigger on flow_events (trigger_id, at desc) where execution_id is null;

      create table activation_idempotency (
        tenant_id uuid not null,
        trigger_id uuid not null,
        key text not null,
        status_code integer,
        headers jsonb,
        body text,
        created_at timestamptz not null,
        expires_at timestamptz not null,
        primary key (trigger_id, key)
      );
      create index activation_idempotency_expiry on activation_idempotency (expires_at);
    `);
  }
}
