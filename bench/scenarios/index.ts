import type { Scenario } from '../support/scenario.js';
import { authList } from './auth-list.js';

/** Every scenario, in the order `npm run bench` runs them; add new ones here. */
export const SCENARIOS: Scenario[] = [authList];
