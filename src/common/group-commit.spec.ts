import { GroupCommit, sharedReads } from './group-commit.js';

/** A `process` whose batches the test finishes by hand, recording what each batch held. */
function manualProcess() {
  const batches: { items: number[]; finish: (error?: Error) => void }[] = [];
  const process = (items: number[]) =>
    new Promise<string[]>((resolve, reject) => {
      batches.push({
        items,
        finish: (error) => (error ? reject(error) : resolve(items.map((item) => `done ${item}`))),
      });
    });
  return { batches, process };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('GroupCommit', () => {
  it('a lone call goes in the same turn of the event loop, without waiting for company', async () => {
    const { batches, process } = manualProcess();
    const group = new GroupCommit(process, 10);

    const answer = group.submit('a', 1);
    await settle();
    expect(batches.map((batch) => batch.items)).toEqual([[1]]);
    batches[0].finish();
    await expect(answer).resolves.toBe('done 1');
  });

  it('calls of one turn go together; calls arriving during a batch go in the next one; at most maxBatch each', async () => {
    const { batches, process } = manualProcess();
    const group = new GroupCommit(process, 3);

    const first = [1, 2].map((item) => group.submit('a', item));
    await settle();
    expect(batches.map((batch) => batch.items)).toEqual([[1, 2]]);
    const during = [3, 4, 5, 6].map((item) => group.submit('a', item));
    await settle();
    expect(batches).toHaveLength(1);
    batches[0].finish();
    await settle();
    expect(batches.map((batch) => batch.items)).toEqual([
      [1, 2],
      [3, 4, 5],
    ]);
    const late = group.submit('a', 7);
    batches[1].finish();
    await settle();
    expect(batches.map((batch) => batch.items)).toEqual([
      [1, 2],
      [3, 4, 5],
      [6, 7],
    ]);
    batches[2].finish();
    expect(await Promise.all([...first, ...during, late])).toEqual([1, 2, 3, 4, 5, 6, 7].map((item) => `done ${item}`));

    // Idle again: the next call goes at once.
    void group.submit('a', 8);
    await settle();
    expect(batches.at(-1)!.items).toEqual([8]);
  });

  it('keys do not wait for each other', async () => {
    const { batches, process } = manualProcess();
    const group = new GroupCommit(process, 10);

    void group.submit('a', 1);
    void group.submit('b', 2);
    await settle();
    void group.submit('a', 3);
    await settle();
    expect(batches.map((batch) => batch.items)).toEqual([[1], [2]]);
  });

  it('a failed batch fails each of its calls, and the calls queued behind it still run', async () => {
    const { batches, process } = manualProcess();
    const group = new GroupCommit(process, 10);

    const first = group.submit('a', 1);
    await settle();
    const second = group.submit('a', 2);
    const third = group.submit('a', 3);
    batches[0].finish(new Error('connection lost'));
    await expect(first).rejects.toThrow('connection lost');
    await settle();
    expect(batches[1].items).toEqual([2, 3]);
    batches[1].finish(new Error('deadlock'));
    await expect(second).rejects.toThrow('deadlock');
    await expect(third).rejects.toThrow('deadlock');

    const fourth = group.submit('a', 4);
    await settle();
    batches[2].finish();
    await expect(fourth).resolves.toBe('done 4');
  });
});

describe('sharedReads', () => {
  it('callers that arrive during a read share the next read, never the one already running', async () => {
    let version = 1;
    const reads: ((value: number) => void)[] = [];
    const shared = sharedReads((_key: string) => new Promise<number>((resolve) => reads.push(resolve)));

    const early = shared.submit('flow', 'flow');
    await settle();
    // Changed after the first read began: callers from now on must see it.
    version = 2;
    const late = [shared.submit('flow', 'flow'), shared.submit('flow', 'flow')];
    await settle();
    expect(reads).toHaveLength(1);
    reads[0](1);
    await expect(early).resolves.toBe(1);
    await settle();
    expect(reads).toHaveLength(2);
    reads[1](version);
    expect(await Promise.all(late)).toEqual([2, 2]);
  });
});
