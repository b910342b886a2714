import type { MigrationObject } from '@mikro-orm/core';
import { Migration20261123000000_foundation } from './Migration20261123000000_foundation.js';
import { Migration20261123010000_deliveries } from './Migration20261123010000_deliveries.js';
import { Migration20261123020000_cron_triggers } from './Migration20261123020000_cron_triggers.js';
import { Migration20261123030000_flows } from './Migration20261123030000_flows.js';
import { Migration20261123040000_retention } from './Migration20261123040000_retention.js';
import { Migration20261124000000_attempt_replica } from './Migration20261124000000_attempt_replica.js';

/**
 * Every migration, oldest first. Listed explicitly so the compiled service, the tests (which
 * run the TypeScript) and `npm run migrate` all apply the same set without file globbing.
 */
export const MIGRATIONS: MigrationObject[] = [
  { name: 'Migration20261123000000_foundation', class: Migration20261123000000_foundation },
  { name: 'Migration20261123010000_deliveries', class: Migration20261123010000_deliveries },
  { name: 'Migration20261123020000_cron_triggers', class: Migration20261123020000_cron_triggers },
  { name: 'Migration20261123030000_flows', class: Migration20261123030000_flows },
  { name: 'Migration20261123040000_retention', class: Migration20261123040000_retention },
  { name: 'Migration20261124000000_attempt_replica', class: Migration20261124000000_attempt_replica },
];
