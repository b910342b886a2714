import { runKeyErrors } from './run-keys.js';

describe('runKeyErrors', () => {
  it('accepts distinct run keys of the allowed alphabet', () => {
    expect(runKeyErrors(['orders.sync', 'billing:nightly', 'A-Z_0-9'])).toEqual([]);
    expect(runKeyErrors([])).toEqual([]);
  });

  it('names the index of every bad entry', () => {
    expect(runKeyErrors(['ok', 'has space', 7, '', 'x'.repeat(101)])).toEqual([
      { field: 'runKeys[1]', message: expect.stringContaining('1–100 characters') },
      { field: 'runKeys[2]', message: 'must be a string' },
      { field: 'runKeys[3]', message: expect.stringContaining('1–100 characters') },
      { field: 'runKeys[4]', message: expect.stringContaining('1–100 characters') },
    ]);
  });

  it('blames a duplicate and points at the first occurrence', () => {
    expect(runKeyErrors(['a', 'b', 'a'])).toEqual([{ field: 'runKeys[2]', message: 'repeats runKeys[0]' }]);
  });
});
