import type { MisfirePolicy } from './triggers.entities.js';

export const FIRE_ALL_CAP = 100;

export interface SlotPlan {
  fire: Date[];
  skipped: number;
}

/**
 * Which due slots to fire. A slot at most `thresholdMs` late is on time and always fires (a busy
 * second is not an outage); older ones were missed while nothing ran, and the policy decides:
 * `skip` drops them, `fire_once` folds them into one firing (the latest, unless an on-time slot
 * fires anyway), `fire_all` fires them oldest first, the most recent FIRE_ALL_CAP at most.
 * `due` is oldest first; `truncated` says older missed slots exist beyond it.
 */
export function planSlots(
  due: Date[],
  now: Date,
  policy: MisfirePolicy,
  thresholdMs: number,
  truncated = false,
): SlotPlan {
  const onTime = due.filter((slot) => now.getTime() - slot.getTime() <= thresholdMs);
  const missed = due.filter((slot) => now.getTime() - slot.getTime() > thresholdMs);
  const olderMissed = truncated ? 1 : 0;
  switch (policy) {
    case 'skip':
      return { fire: onTime, skipped: missed.length + olderMissed };
    case 'fire_once':
      if (missed.length === 0) return { fire: onTime, skipped: 0 };
      if (onTime.length > 0) return { fire: onTime, skipped: missed.length + olderMissed };
      return { fire: [missed[missed.length - 1]], skipped: missed.length - 1 + olderMissed };
    case 'fire_all': {
      const fire = [...missed, ...onTime].slice(-FIRE_ALL_CAP);
      return { fire, skipped: missed.length + onTime.length - fire.length + olderMissed };
    }
  }
}
