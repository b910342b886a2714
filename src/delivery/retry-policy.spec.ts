import { nextAttemptDelayMs } from './retry-policy.js';

const schedule = [0, 5_000, 300_000, 1_800_000];

describe('nextAttemptDelayMs', () => {
  it('follows the schedule with ±20 % jitter', () => {
    expect(nextAttemptDelayMs(schedule, 1, null, () => 0)).toBe(4_000);
    expect(nextAttemptDelayMs(schedule, 1, null, () => 1)).toBe(6_000);
    expect(nextAttemptDelayMs(schedule, 1, null, () => 0.5)).toBe(5_000);
    expect(nextAttemptDelayMs(schedule, 2, null, () => 0.5)).toBe(300_000);
  });

  it('gives up once every scheduled attempt was made', () => {
    expect(nextAttemptDelayMs(schedule, 4, null)).toBeNull();
    expect(nextAttemptDelayMs(schedule, 9, 1_000)).toBeNull();
  });

  it('clamps Retry-After between the scheduled delay and twice it, without jitter', () => {
    expect(nextAttemptDelayMs(schedule, 1, 7_000, () => 0)).toBe(7_000);
    expect(nextAttemptDelayMs(schedule, 1, 1_000, () => 0)).toBe(5_000);
    expect(nextAttemptDelayMs(schedule, 1, 60_000, () => 0)).toBe(10_000);
  });
});
