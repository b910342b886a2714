const DURATION = /^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d{1,3})?)S)?)?$/;

/** Longest delay or timeout a step may ask for: a year is already past any sensible wait. */
export const MAX_DURATION_MS = 366 * 24 * 3_600_000;

/**
 * ISO-8601 durations in weeks, days, hours, minutes and seconds (`PT10M`, `P1DT12H`, `PT0S`).
 * Years and months are refused: their length depends on the calendar, which a timer must not.
 * Returns milliseconds, or null when the text is not such a duration.
 */
export function parseDuration(text: string): number | null {
  const match = DURATION.exec(text);
  if (!match || text === 'P' || text.endsWith('T')) return null;
  const [, weeks, days, hours, minutes, seconds] = match;
  const ms =
    Number(weeks ?? 0) * 604_800_000 +
    Number(days ?? 0) * 86_400_000 +
    Number(hours ?? 0) * 3_600_000 +
    Number(minutes ?? 0) * 60_000 +
    Math.round(Number(seconds ?? 0) * 1000);
  return ms <= MAX_DURATION_MS ? ms : null;
}
