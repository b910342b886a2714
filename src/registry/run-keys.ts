import type { FieldError } from '../common/errors.js';
import { RUN_KEY_PATTERN } from '../common/validators.js';

/** Enough for any sane routing table, small enough that the GIN index entry stays cheap. */
export const MAX_RUN_KEYS = 100;

/**
 * Per-entry errors of a `runKeys` array, each naming its index (`runKeys[1]`) as SPEC §7 asks.
 * class-validator's `each: true` can only blame the whole property, so the entries are checked
 * here; the DTO checks that `runKeys` is an array of at most MAX_RUN_KEYS entries.
 */
export function runKeyErrors(runKeys: readonly unknown[], field = 'runKeys'): FieldError[] {
  const errors: FieldError[] = [];
  const firstIndex = new Map<string, number>();
  runKeys.forEach((runKey, index) => {
    const entry = `${field}[${index}]`;
    if (typeof runKey !== 'string') {
      errors.push({ field: entry, message: 'must be a string' });
    } else if (!RUN_KEY_PATTERN.test(runKey)) {
      errors.push({ field: entry, message: 'must be 1–100 characters of A-Z a-z 0-9 . _ : -' });
    } else if (firstIndex.has(runKey)) {
      errors.push({ field: entry, message: `repeats ${field}[${firstIndex.get(runKey)}]` });
    } else {
      firstIndex.set(runKey, index);
    }
  });
  return errors;
}
