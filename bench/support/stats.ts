/** The nearest-rank percentile (`quantile` in 0..1) of unsorted values; NaN for none. */
export function percentile(values: readonly number[], quantile: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.min(sorted.length - 1, Math.ceil(quantile * sorted.length) - 1))];
}

export const sleep = (ms: number) => new Promise<void>((done) => setTimeout(done, Math.max(0, ms)));

/** Resolves with the time the probe first held, polling every `everyMs`. */
export async function pollUntil(probe: () => Promise<boolean>, timeoutMs: number, everyMs = 20): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return Date.now();
    await sleep(everyMs);
  }
  throw new Error(`not done within ${timeoutMs} ms`);
}
