import { Migration } from '@mikro-orm/migrations';

/**
 * The delivery outbox. A delivery is durable work: PENDING rows become due at next_attempt_at
 * and are claimed with FOR UPDATE SKIP LOCKED; SENDING rows carry a lease (leased_until) that
 * hands them back to PENDING if their replica dies. Each attempt is a delivery_attempts row.
 */
export class Migration20261123010000_deliveries extends Migration {
  override up(): void {
    this.addSql(`
      create table deliveries (
        id uuid primary key,
        tenant_id uuid not null references tenants (id) on delete cascade deferrable initially deferred,
        webhook_id text not null unique,
        backend_id uuid,
        application_id uuid,
        url text not null,
        explicit_url boolean not null,
        method text not null,
        headers jsonb not null,
        body text not null,
        status text not null check (status in ('PENDING', 'SENDING', 'SUCCEEDED', 'DEAD', 'PARKED')),
        attempts integer not null default 0,
        budget_start integer not null default 0,
        next_attempt_at timestamptz,
        leased_until timestamptz,
        leased_by text,
        last_status_code integer,
        last_error text,
        response_excerpt text,
        origin_type text not null,
        origin_id uuid not null,
        created_at timestamptz not null,
        updated_at timestamptz not null,
        finished_at timestamptz,
        check (backend_id is not null or application_id is not null)
      );
      create index deliveries_due on deliveries (next_attempt_at) where status = 'PENDING';
      create index deliveries_leases on deliveries (leased_until) where status = 'SENDING';
      create index deliveries_tenant_list on deliveries (tenant_id, created_at desc, id desc);
      create index deliveries_backend_list on deliveries (backend_id, created_at desc, id desc) where backend_id is not null;
      create index deliveries_backend_parked on deliveries (backend_id) where status = 'PARKED';
      create index deliveries_origin on deliveries (origin_id);

      create table delivery_attempts (
        id uuid primary key,
        tenant_id uuid not null,
        delivery_id uuid not null references deliveries (id) on delete cascade deferrable initially deferred,
        attempt integer not null,
        at timestamptz not null,
        status_code integer,
        duration_ms integer not null,
        response_excerpt text,
        error text
      );
      create index delivery_attempts_delivery on delivery_attempts (delivery_id, attempt);

      -- Per-backend attempt timeout; null: DELIVERY_TIMEOUT_MS.
      alter table backends add column timeout_ms integer check (timeout_ms between 100 and 300000);
    `);
  }
}
