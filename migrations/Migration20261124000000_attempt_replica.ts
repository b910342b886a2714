import { Migration } from '@mikro-orm/migrations';

/**
 * Which replica made each delivery attempt (`host:pid`, from the lease it held); null for
 * attempts logged before this column existed.
 */
export class Migration20261124000000_attempt_replica extends Migration {
  override up(): void {
    this.addSql(`alter table delivery_attempts add column replica text;`);
  }
}
