import type { Scenario } from '../support/scenario.js';
import { activation } from './activation.js';
import { authList } from './auth-list.js';
import { cron } from './cron.js';
import { delivery } from './delivery.js';
import { soak } from './soak.js';

/** Every scenario, in the order `npm run bench` runs them; add new ones here. */
export const SCENARIOS: Scenario[] = [authList, delivery, cron, activation, soak];
