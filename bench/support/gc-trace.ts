/**
 * Reads the lines V8 prints with `--trace-gc` and keeps, for each full (mark-compact) collection,
 * the heap still in use after it: the live objects. Unlike the heap in use at an arbitrary moment,
 * which swings with the garbage not yet collected, this only grows when something keeps memory
 * alive, so it is what tells a leak.
 */
export class GcTrace {
  /** --trace-gc prints one line per collection on stdout. */
  static readonly NODE_FLAGS = ['--trace-gc'];
  /** `[pid:0x…]   81234 ms: Mark-Compact 301.2 (330.5) -> 188.7 (329.9) MB, …` */
  private static readonly MARK_COMPACT =
    /\s(\d+) ms: (?:Mark-Compact|Mark-Compact \(reduce\)) [\d.]+ \([\d.]+\) -> ([\d.]+) \(/;
  private static readonly ANY_GC = /\s\d+ ms: (?:Scavenge|Mark-Compact|Mark-Sweep|Minor Mark)/;

  private readonly fullCollections: { at: number; liveMb: number }[] = [];

  /** For startServer's onStdoutLine: takes --trace-gc lines, leaves the others. */
  readonly onLine = (line: string): boolean => {
    const match = GcTrace.MARK_COMPACT.exec(line);
    if (match) this.fullCollections.push({ at: Date.now(), liveMb: Number(match[2]) });
    return match !== null || GcTrace.ANY_GC.test(line);
  };

  /** Live heap after each full collection between two times (ms since the epoch). */
  liveMbBetween(from: number, to: number): number[] {
    return this.fullCollections.filter((gc) => gc.at > from && gc.at <= to).map((gc) => gc.liveMb);
  }
}
