interface Pending<T, R> {
  item: T;
  resolve: (result: R) => void;
  reject: (error: unknown) => void;
}

/**
 * Group commit: calls with the same key are processed together, in arrival order, by one call of
 * `process` (at most `maxBatch` at a time): the calls made in the same turn of the event loop (the
 * batch starts in setImmediate, not on a timer), then, while a batch runs, every call arriving
 * meanwhile, in the next one. So a call waits at most for the batch in flight and its own. `process`
 * answers each item in order; if it throws, every call of that batch gets the error and the next
 * batch goes on.
 */
export class GroupCommit<T, R> {
  private readonly queues = new Map<string, Pending<T, R>[]>();

  constructor(
    private readonly process: (items: T[]) => Promise<R[]>,
    private readonly maxBatch: number,
  ) {}

  submit(key: string, item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      let queue = this.queues.get(key);
      if (!queue) {
        // The key's queue lives until its runner finds it empty.
        queue = [];
        this.queues.set(key, queue);
        const calls = queue;
        setImmediate(() => void this.run(key, calls));
      }
      queue.push({ item, resolve, reject });
    });
  }

  private async run(key: string, queue: Pending<T, R>[]): Promise<void> {
    while (queue.length > 0) {
      const batch = queue.splice(0, this.maxBatch);
      try {
        const results = await this.process(batch.map((pending) => pending.item));
        batch.forEach((pending, index) => pending.resolve(results[index]));
      } catch (error) {
        for (const pending of batch) pending.reject(error);
      }
    }
    this.queues.delete(key);
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
