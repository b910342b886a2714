interface Pending<T, R> {
  item: T;
  resolve: (result: R) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit: calls with the same key that arrive while a batch of that key is being processed
 * wait for it to finish and are then processed together, in arrival order, by one call of
 * `process` (at most `maxBatch` at a time). A lone call goes at once, so the wait is bounded by
 * one batch, never a timer. `process` answers each item in order; if it throws, every call of
 * that batch gets the error and the next batch goes on.
 */
export class GroupCommit<T, R> {
  private readonly queues = new Map<string, Pending<T, R>[]>();

  constructor(
    private readonly process: (items: T[]) => Promise<R[]>,
    private readonly maxBatch: number,
  ) {}

  submit(key: string, item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      const queue = this.queues.get(key);
      if (queue) {
        queue.push({ item, resolve, reject });
        return;
      }
      // The key's entry exists while a batch is in flight; it holds the calls of the next one.
      this.queues.set(key, []);
      void this.run(key, [{ item, resolve, reject }]);
    });
  }

  private async run(key: string, batch: Pending<T, R>[]): Promise<void> {
    for (;;) {
      try {
        const results = await this.process(batch.map((pending) => pending.item));
        batch.forEach((pending, index) => pending.resolve(results[index]));
      } catch (error) {
        for (const pending of batch) pending.reject(error);
      }
      const queue = this.queues.get(key)!;
      if (queue.length === 0) {
        this.queues.delete(key);
        return;
      }
      batch = queue.splice(0, this.maxBatch);
    }
  }
}

/**
 * Calls with the same key want the same answer (a read): one read serves each batch. A caller
 * that arrives while a read runs waits for the next one, which starts after it arrived, so it
 * never gets an answer older than its call, only a shared one.
 */
export function sharedReads<T, R>(read: (item: T) => Promise<R>): GroupCommit<T, R> {
  return new GroupCommit<T, R>(async (items) => {
    const result = await read(items[0]);
    return items.map(() => result);
  }, Number.MAX_SAFE_INTEGER);
}
