import { FIRE_ALL_CAP, planSlots } from './misfire.js';

const now = new Date('2026-01-01T12:00:00Z');
const ago = (seconds: number) => new Date(now.getTime() - seconds * 1000);
const threshold = 60_000;

describe('planSlots', () => {
  it('fires on-time slots whatever the policy', () => {
    for (const policy of ['skip', 'fire_once', 'fire_all'] as const) {
      expect(planSlots([ago(2), ago(1)], now, policy, threshold)).toEqual({ fire: [ago(2), ago(1)], skipped: 0 });
    }
  });

  it('skip drops missed slots', () => {
    expect(planSlots([ago(300), ago(200), ago(100)], now, 'skip', threshold)).toEqual({ fire: [], skipped: 3 });
    expect(planSlots([ago(120), ago(30)], now, 'skip', threshold)).toEqual({ fire: [ago(30)], skipped: 1 });
  });

  it('fire_once folds missed slots into one firing of the latest', () => {
    expect(planSlots([ago(300), ago(200), ago(100)], now, 'fire_once', threshold)).toEqual({
      fire: [ago(100)],
      skipped: 2,
    });
    expect(planSlots([ago(300), ago(30)], now, 'fire_once', threshold)).toEqual({ fire: [ago(30)], skipped: 1 });
    expect(planSlots([ago(300)], now, 'fire_once', threshold, true).skipped).toBe(1);
  });

  it('fire_all fires every missed slot, oldest first, capped', () => {
    expect(planSlots([ago(300), ago(200), ago(10)], now, 'fire_all', threshold)).toEqual({
      fire: [ago(300), ago(200), ago(10)],
      skipped: 0,
    });
    const many = Array.from({ length: 250 }, (_, i) => ago(1000 - i));
    const plan = planSlots(many, now, 'fire_all', threshold);
    expect(plan.fire).toHaveLength(FIRE_ALL_CAP);
    expect(plan.fire[0]).toEqual(many[150]);
    expect(plan.skipped).toBe(150);
  });
});
