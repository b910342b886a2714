const JITTER = 0.2;

export type Random = () => number;

/**
 * When the next attempt is due, or null when the budget is spent. `attemptsInBudget` counts the
 * attempts made since the delivery was created or last replayed; schedule[n] is the delay before
 * attempt n+1. A Retry-After on 429/503 replaces the delay, clamped to [scheduled, 2×scheduled],
 * without jitter (the receiver asked for that time); otherwise ±20 % jitter spreads retries.
 */
export function nextAttemptDelayMs(
  schedule: readonly number[],
  attemptsInBudget: number,
  retryAfterMs: number | null,
  random: Random = Math.random,
): number | null {
  if (attemptsInBudget >= schedule.length) return null;
  const scheduled = schedule[attemptsInBudget];
  if (retryAfterMs !== null) return Math.min(Math.max(retryAfterMs, scheduled), 2 * scheduled);
  return Math.round(scheduled * (1 - JITTER + 2 * JITTER * random()));
}
