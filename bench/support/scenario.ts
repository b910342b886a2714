/** One line of the results table: a measured figure next to what a bare server does on the same machine. */
export interface BenchRow {
  scenario: string;
  figure: string;
  value: number;
  /** The same figure for the baseline, or null when the scenario has none. */
  baseline: number | null;
  unit: string;
}

/** A row; a value that could not be measured (null) shows as n/a. */
export function benchRow(
  scenario: string,
  figure: string,
  unit: string,
  value: number | null,
  baseline: number | null = null,
): BenchRow {
  return { scenario, figure, value: value ?? NaN, baseline, unit };
}

export interface BenchContext {
  /** PostgreSQL server the scenario creates its own database on (never the server's own databases). */
  databaseServerUrl: string;
  /** Load settings shared by every scenario, so figures compare across runs and scenarios. */
  durationSeconds: number;
  connections: number;
  log(message: string): void;
  /** Markdown printed on stdout after the results table (a scenario's own table, a verdict). */
  report(markdown: string): void;
}

/** A scenario lives in bench/scenarios/<name>.ts and is listed in bench/scenarios/index.ts. */
export interface Scenario {
  name: string;
  description: string;
  run(context: BenchContext): Promise<BenchRow[]>;
}
