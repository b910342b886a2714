import { Migration } from '@mikro-orm/migrations';

/**
 * Tenancy, machine users and their tokens, backends, signing secrets.
 * Every table but `tenants` (whose id is the tenant) carries tenant_id, the future
 * distribution key; list indexes lead with it so a tenant's page is one index range.
 * Foreign keys are checked at commit: entities refer to each other by id columns (modules do
 * not share entity classes), so the unit of work cannot order inserts by relation.
 */
export class Migration20261123000000_foundation extends Migration {
  override up(): void {
    this.addSql(`
      create table tenants (
        id uuid primary key,
        name text not null,
        slug text not null unique,
        created_at timestamptz not null
      );

      create table projects (
        id uuid primary key,
        tenant_id uuid not null references tenants (id) on delete cascade deferrable initially deferred,
        name text not null,
        slug text not null,
        created_at timestamptz not null,
        unique (tenant_id, slug)
      );
      create index projects_tenant_list on projects (tenant_id, created_at desc, id desc);

      create table applications (
        id uuid primary key,
        tenant_id uuid not null references tenants (id) on delete cascade deferrable initially deferred,
        project_id uuid not null references projects (id) on delete cascade deferrable initially deferred,
        name text not null,
        slug text not null,
        created_at timestamptz not null,
        unique (project_id, slug)
      );
      create index applications_project_list on applications (project_id, created_at desc, id desc);

      create table machine_users (
        id uuid primary key,
        tenant_id uuid not null references tenants (id) on delete cascade deferrable initially deferred,
        name text not null,
        username text not null,
        enabled boolean not null,
        roles text[] not null,
        created_at timestamptz not null,
        updated_at timestamptz not null,
        unique (tenant_id, username)
      );
      create index machine_users_tenant_list on machine_users (tenant_id, created_at desc, id desc);

      create table machine_user_tokens (
        id uuid primary key,
        tenant_id uuid not null references tenants (id) on delete cascade deferrable initially deferred,
        machine_user_id uuid not null references machine_users (id) on delete cascade deferrable initially deferred,
        token_hash bytea not null unique,
        prefix text not null,
        created_at timestamptz not null,
        last_used_at timestamptz,
        revoked_at timestamptz
      );
      create index machine_user_tokens_user_list on machine_user_tokens (machine_user_id, created_at desc, id desc);

      create table backends (
        id uuid primary key,
        tenant_id uuid not null references tenants (id) on delete cascade deferrable initially deferred,
        machine_user_id uuid not null references machine_users (id) on delete cascade deferrable initially deferred,
        name text not null,
        callback_url text not null,
        description text,
        run_keys text[] not null,
        enabled boolean not null,
        created_at timestamptz not null,
        updated_at timestamptz not null,
        unique (machine_user_id, name)
      );
      create index backends_tenant_list on backends (tenant_id, created_at desc, id desc);
      create index backends_routing on backends using gin (run_keys) where enabled;

      create table signing_secrets (
        id uuid primary key,
        tenant_id uuid not null references tenants (id) on delete cascade deferrable initially deferred,
        owner_type text not null check (owner_type in ('backend', 'application')),
        owner_id uuid not null,
        ciphertext text not null,
        created_at timestamptz not null,
        expires_at timestamptz
      );
      create index signing_secrets_owner on signing_secrets (owner_id, created_at desc);
    `);
  }
}
