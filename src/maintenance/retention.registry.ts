import { Injectable } from '@nestjs/common';

/** Deletes at most `limit` finished rows older than `cutoff`; returns how many it deleted. */
export type PurgeBatch = (cutoff: Date, limit: number) => Promise<number>;

/**
 * Where each module offers the purge of its own finished rows (modules keep their tables to
 * themselves); the retention job runs them in small batches.
 */
@Injectable()
export class RetentionRegistry {
  private readonly purges = new Map<string, PurgeBatch>();

  register(name: string, purge: PurgeBatch): void {
    if (this.purges.has(name)) throw new Error(`a purge named ${name} is already registered`);
    this.purges.set(name, purge);
  }

  entries(): [string, PurgeBatch][] {
    return [...this.purges];
  }
}
