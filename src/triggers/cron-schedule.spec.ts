import { CronSchedule } from './cron-schedule.js';

function schedule(expression: string, timezone = 'UTC'): CronSchedule {
  const parsed = CronSchedule.parse(expression, timezone);
  if (!(parsed instanceof CronSchedule)) throw new Error(parsed.message);
  return parsed;
}

const iso = (dates: Date[]) => dates.map((d) => d.toISOString());

describe('CronSchedule.parse', () => {
  it.each(['0 * * * *', '*/5 * * * * *', '@hourly', '@daily', '@weekly', '@monthly', '@yearly', '0 9 * * MON-FRI'])(
    'accepts %s',
    (expression) => expect(CronSchedule.parse(expression, 'UTC')).toBeInstanceOf(CronSchedule),
  );

  it.each([
    ['0 0 0 1 1 * 2030', /got 7/],
    ['* * * *', /got 4/],
    ['61 * * * *', /.+/],
    ['@reboot', /unknown macro/],
    ['@annually', /unknown macro/],
    ['0 0 30 2 *', /never fires/],
    ['', /.+/],
    ['not cron', /.+/],
  ])('refuses %s as INVALID_CRON', (expression, message) => {
    const parsed = CronSchedule.parse(expression, 'UTC');
    expect(parsed).toMatchObject({ code: 'INVALID_CRON', message: expect.stringMatching(message) });
  });

  it.each(['Mars/Olympus', 'Europe/Nowhere', '', '+02:00', 'GMT+2 '])('refuses time zone "%s"', (zone) => {
    expect(CronSchedule.parse('0 * * * *', zone)).toMatchObject({ code: 'INVALID_TIMEZONE' });
  });

  it.each(['UTC', 'Europe/Berlin', 'America/New_York', 'Etc/GMT-5'])('accepts time zone %s', (zone) => {
    expect(CronSchedule.parse('0 * * * *', zone)).toBeInstanceOf(CronSchedule);
  });
});

describe('CronSchedule occurrences', () => {
  it('lists the slots of an outage, oldest first, bounded to the most recent', () => {
    const everySecond = schedule('* * * * * *');
    const after = new Date('2026-01-01T00:00:00Z');
    const until = new Date('2026-01-01T00:00:05.500Z');
    expect(iso(everySecond.occurrencesBetween(after, until, 100).slots)).toEqual([
      '2026-01-01T00:00:01.000Z',
      '2026-01-01T00:00:02.000Z',
      '2026-01-01T00:00:03.000Z',
      '2026-01-01T00:00:04.000Z',
      '2026-01-01T00:00:05.000Z',
    ]);
    const capped = everySecond.occurrencesBetween(after, new Date('2026-01-02T00:00:00Z'), 3);
    expect(capped.skipped).toBe(true);
    expect(iso(capped.slots)).toEqual([
      '2026-01-01T23:59:58.000Z',
      '2026-01-01T23:59:59.000Z',
      '2026-01-02T00:00:00.000Z',
    ]);
  });

  it('is exact at the cap: `limit` slots are all there are, one more is an outage reported as skipped', () => {
    const everySecond = schedule('* * * * * *');
    const after = new Date('2026-01-01T00:00:00Z');
    const exactly = everySecond.occurrencesBetween(after, new Date('2026-01-01T00:00:03Z'), 3);
    expect(exactly.skipped).toBe(false);
    expect(iso(exactly.slots)).toEqual([
      '2026-01-01T00:00:01.000Z',
      '2026-01-01T00:00:02.000Z',
      '2026-01-01T00:00:03.000Z',
    ]);
    const oneMore = everySecond.occurrencesBetween(after, new Date('2026-01-01T00:00:04Z'), 3);
    expect(oneMore.skipped).toBe(true);
    expect(iso(oneMore.slots)).toEqual([
      '2026-01-01T00:00:02.000Z',
      '2026-01-01T00:00:03.000Z',
      '2026-01-01T00:00:04.000Z',
    ]);
    // Nothing due yet: no slots, and the boundaries are (after, until].
    expect(everySecond.occurrencesBetween(after, new Date('2026-01-01T00:00:00.999Z'), 3).slots).toEqual([]);
  });

  describe('DST', () => {
    it('Europe/Berlin spring forward: 02:30 does not exist, fires once at 03:00 local', () => {
      const daily = schedule('30 2 * * *', 'Europe/Berlin');
      const slots = daily.occurrencesBetween(new Date('2026-03-28T12:00:00Z'), new Date('2026-03-30T12:00:00Z'), 10);
      expect(iso(slots.slots)).toEqual(['2026-03-29T01:00:00.000Z', '2026-03-30T00:30:00.000Z']);
    });

    it('Europe/Berlin fall back: 02:30 occurs twice, fires once', () => {
      const daily = schedule('30 2 * * *', 'Europe/Berlin');
      const slots = daily.occurrencesBetween(new Date('2026-10-24T12:00:00Z'), new Date('2026-10-26T12:00:00Z'), 10);
      expect(iso(slots.slots)).toEqual(['2026-10-25T00:30:00.000Z', '2026-10-26T01:30:00.000Z']);
    });

    it('America/New_York spring forward and fall back', () => {
      const daily = schedule('30 2 * * *', 'America/New_York');
      const spring = daily.occurrencesBetween(new Date('2026-03-07T12:00:00Z'), new Date('2026-03-09T12:00:00Z'), 10);
      expect(iso(spring.slots)).toEqual(['2026-03-08T07:00:00.000Z', '2026-03-09T06:30:00.000Z']);
      // New York repeats 01:00–02:00 local on 2026-11-01 (EDT, then EST).
      const repeated = schedule('30 1 * * *', 'America/New_York');
      const fall = repeated.occurrencesBetween(new Date('2026-10-31T12:00:00Z'), new Date('2026-11-02T12:00:00Z'), 10);
      expect(iso(fall.slots)).toEqual(['2026-11-01T05:30:00.000Z', '2026-11-02T06:30:00.000Z']);
    });

    it('an hourly job follows elapsed time through a fall-back night', () => {
      const hourly = schedule('0 * * * *', 'Europe/Berlin');
      const slots = hourly.occurrencesBetween(new Date('2026-10-24T23:30:00Z'), new Date('2026-10-25T03:30:00Z'), 10);
      expect(slots.slots).toHaveLength(4);
    });
  });
});
