import { DomainException } from '../common/errors.js';
import { EXECUTION_STATUSES, FINISHED, transition, TRANSITIONS } from './execution-state.js';

describe('execution transition table', () => {
  it.each(TRANSITIONS.map((row) => [row.from ?? 'nothing', row.event, row.to] as const))(
    '%s --%s--> %s',
    (from, event, to) => {
      expect(transition(from === 'nothing' ? null : from, event)).toBe(to);
    },
  );

  it('refuses every event on a finished execution with EXECUTION_FINISHED', () => {
    for (const from of FINISHED) {
      for (const event of ['activate', 'cancel', 'finish', 'step_completed'] as const) {
        expect(() => transition(from, event)).toThrow(DomainException);
      }
    }
  });

  it('has no transition out of a finished state and reaches every state', () => {
    expect(TRANSITIONS.filter((row) => row.from && FINISHED.includes(row.from))).toEqual([]);
    expect(new Set(TRANSITIONS.map((row) => row.to))).toEqual(new Set(EXECUTION_STATUSES));
  });

  it('refuses an impossible move as a bug', () => {
    expect(() => transition('running', 'activate')).toThrow(/no transition/);
    expect(() => transition(null, 'activate')).toThrow(/no transition/);
  });
});
