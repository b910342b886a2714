import { Cron } from 'croner';

export const CRON_MACROS = ['@yearly', '@monthly', '@weekly', '@daily', '@hourly'] as const;

export type CronProblem = { code: 'INVALID_CRON' | 'INVALID_TIMEZONE'; message: string };

/** Slots in a time range, oldest first; `skipped`: older ones exist beyond the limit. */
export interface Occurrences {
  slots: Date[];
  skipped: boolean;
}

/**
 * A validated cron expression in an IANA zone, on croner. Five fields, six fields (seconds
 * first) or one of the SPEC's macros. DST follows croner's fixed-time rule "no-wildcard", close
 * to Vixie cron: a job whose seconds, minutes and hours have no wildcard or step (`30 2 * * *`)
 * fires once at the first valid instant after a spring-forward gap and once in a repeated
 * fall-back hour; a job with a wildcard or step there (`0 * * * *`) follows elapsed time, so it
 * skips the missing local times and fires on both occurrences of a repeated one.
 */
export class CronSchedule {
  private constructor(private readonly cron: Cron) {}

  static parse(expression: string, timezone: string): CronSchedule | CronProblem {
    const zoneProblem = timezoneProblem(timezone);
    if (zoneProblem) return zoneProblem;
    const trimmed = expression.trim();
    if (trimmed.startsWith('@') && !(CRON_MACROS as readonly string[]).includes(trimmed.toLowerCase())) {
      return invalid(`unknown macro ${trimmed}; use one of ${CRON_MACROS.join(' ')}`);
    }
    const fields = trimmed.split(/\s+/).length;
    if (!trimmed.startsWith('@') && fields !== 5 && fields !== 6) {
      return invalid(`expected 5 fields (minute hour day month weekday) or 6 (seconds first), got ${fields}`);
    }
    let cron: Cron;
    try {
      cron = new Cron(trimmed, { paused: true, timezone, mode: '5-or-6-parts', fixedTimeRule: 'no-wildcard' });
    } catch (error) {
      return invalid(cleanMessage((error as Error).message));
    }
    if (cron.nextRun(new Date()) === null) return invalid(`"${trimmed}" never fires (no future occurrence)`);
    return new CronSchedule(cron);
  }

  /** The first occurrence strictly after `instant`, or null if there is none. */
  nextAfter(instant: Date): Date | null {
    return this.cron.nextRun(instant);
  }

  /**
   * Occurrences in (after, until], oldest first; at most `limit` of the most recent ones. The walk
   * is bounded, so a year-long outage of an every-second trigger costs `limit` steps, not millions.
   * It goes forward first: a firing on time has one or two slots to find, and croner's backward
   * walk (`previousRuns`) costs ~5 ms for 100 occurrences, which at 1,000 firings a second was
   * more CPU than a replica has. Only an outage longer than `limit` slots walks back from `until`.
   */
  occurrencesBetween(after: Date, until: Date, limit: number): Occurrences {
    const slots: Date[] = [];
    for (let next = this.cron.nextRun(after); next !== null && next <= until; next = this.cron.nextRun(next)) {
      if (slots.length === limit) {
        const recent = this.cron.previousRuns(limit, new Date(until.getTime() + 1)).filter((d) => d > after);
        return { slots: recent.reverse(), skipped: true };
      }
      slots.push(next);
    }
    return { slots, skipped: false };
  }
}

function invalid(message: string): CronProblem {
  return { code: 'INVALID_CRON', message };
}

function cleanMessage(message: string): string {
  return message.replace(/^CronPattern: /, '').replace(/^Cron: /, '');
}

/** IANA zone names as the runtime's ICU knows them (`Europe/Berlin`, `Etc/GMT-5`, `UTC`). */
export function timezoneProblem(timezone: string): CronProblem | null {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: timezone });
    if (!/^[A-Za-z_]+(\/[A-Za-z0-9_+-]+)*$/.test(timezone)) throw new RangeError();
    return null;
  } catch {
    return { code: 'INVALID_TIMEZONE', message: `"${timezone}" is not an IANA time zone (e.g. Europe/Berlin, UTC)` };
  }
}
