import { describe, expect, it } from 'vitest';
import { allAtOnce } from '../../src/engine/all-at-once.js';

describe('allAtOnce', () => {
  it('starts every item before waiting for any, then waits in order', () => {
    const log: string[] = [];
    allAtOnce(['a', 'b', 'c'], (x) => {
      log.push(`start ${x}`);
      return x === 'b' ? undefined : () => log.push(`wait ${x}`);
    });
    expect(log).toEqual(['start a', 'start b', 'start c', 'wait a', 'wait c']);
  });

  it('waits for every started item after a failure, then throws the first failure', () => {
    const waited: string[] = [];
    const run = () =>
      allAtOnce(['a', 'b', 'c', 'd'], (x) => {
        if (x === 'c') throw new Error('start c failed');
        return () => {
          waited.push(x);
          if (x === 'a') throw new Error('wait a failed');
        };
      });
    // Nothing is started after a failed start; a and b still end, and the
    // first failure (c's start) is the one thrown.
    expect(run).toThrow('start c failed');
    expect(waited).toEqual(['a', 'b']);
  });

  it('hands every failure to onError instead of throwing', () => {
    const errors: string[] = [];
    allAtOnce(
      [1, 2, 3],
      (n) => {
        if (n === 2) throw new Error('two');
        return () => {
          if (n === 3) throw new Error('three');
        };
      },
      (n, e) => errors.push(`${n}: ${(e as Error).message}`),
    );
    expect(errors).toEqual(['2: two', '3: three']);
  });
});
