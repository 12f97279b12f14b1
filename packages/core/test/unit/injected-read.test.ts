import { describe, expect, it } from 'vitest';
import {
  type CheckpointTask,
  InjectedRead,
  type PostOptions,
  type SyscallRequest,
} from '../../src/index.js';

/**
 * A task whose injected calls are a log: posted calls "run" (each returns
 * its first argument) when the next batch runs. Pure bookkeeping, no kernel.
 */
function loggingTask() {
  const posted: { calls: readonly SyscallRequest[]; options?: PostOptions }[] = [];
  const batches: number[] = [];
  const sys = {
    post(calls: readonly SyscallRequest[], options?: PostOptions) {
      posted.push({ calls, options });
    },
    batch(calls: readonly SyscallRequest[]) {
      const all = posted.splice(0);
      batches.push(all.reduce((n, p) => n + p.calls.length, 0) + calls.length);
      for (const p of all)
        p.options?.done?.(
          p.calls.map((c) => BigInt(c.args[0] as number)),
          [],
        );
      return calls.map(() => 0n);
    },
  };
  const task = { pid: 42, data: new Map(), sys } as unknown as CheckpointTask;
  return { task, batches };
}

const answer = (key: string, value: number) =>
  new InjectedRead<number>(key, (task, done) =>
    task.sys.post([{ name: 'getpid', args: [value] }], { done: ([r]) => done(Number(r)) }),
  );

describe('InjectedRead', () => {
  it('reads on first use when nothing posted it, once', () => {
    const { task, batches } = loggingTask();
    const read = answer('t:a', 7);
    expect(read.get(task)).toBe(7);
    expect(read.get(task)).toBe(7);
    expect(batches).toEqual([1]);
  });

  it('posted reads of several phases run in one batch', () => {
    const { task, batches } = loggingTask();
    const a = answer('t:a', 1);
    const b = answer('t:b', 2);
    a.post(task);
    b.post(task);
    a.post(task); // posting twice posts once
    expect(b.get(task)).toBe(2);
    expect(a.get(task)).toBe(1);
    expect(batches).toEqual([2]);
  });

  it('fails clearly when the posted calls never hand over the value', () => {
    const { task } = loggingTask();
    const silent = new InjectedRead<number>('t:silent', (t) =>
      t.sys.post([{ name: 'getpid', args: [0] }]),
    );
    expect(() => silent.get(task)).toThrow(/pid 42: the calls posted for t:silent never gave it/);
  });
});
