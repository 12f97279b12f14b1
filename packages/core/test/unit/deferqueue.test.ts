import { describe, expect, it } from 'vitest';
import { DeferQueue } from '../../src/index.js';

describe('DeferQueue', () => {
  it('runs works in order and returns how many ran', () => {
    const q = new DeferQueue();
    const log: string[] = [];
    q.add(
      'a',
      (d) => log.push(`fn:${d}`),
      (d) => log.push(`dtor:${d}`),
    );
    q.add(
      'b',
      (d) => log.push(`fn:${d}`),
      (d) => log.push(`dtor:${d}`),
    );
    expect(q.run()).toBe(2);
    expect(log).toEqual(['fn:a', 'fn:b']);
    q.destroy();
    expect(log).toEqual(['fn:a', 'fn:b']); // dtor never called for works that ran
  });

  it('stops at the first error; destroy calls dtor only for works that never ran', () => {
    const q = new DeferQueue();
    const log: string[] = [];
    q.add(
      1,
      () => log.push('fn1'),
      () => log.push('dtor1'),
    );
    q.add(
      2,
      () => {
        log.push('fn2');
        throw new Error('boom');
      },
      () => log.push('dtor2'),
    );
    q.add(
      3,
      () => log.push('fn3'),
      () => log.push('dtor3'),
    );
    q.add(4, () => log.push('fn4'));
    expect(() => q.run()).toThrow('boom');
    expect(q.size).toBe(2);
    q.destroy();
    expect(log).toEqual(['fn1', 'fn2', 'dtor3']);
    expect(q.size).toBe(0);
  });

  it('destroy without run calls every dtor', () => {
    const q = new DeferQueue();
    const seen: number[] = [];
    q.add(
      1,
      () => {},
      (d) => seen.push(d),
    );
    q.add(
      2,
      () => {},
      (d) => seen.push(d),
    );
    q.destroy();
    expect(seen).toEqual([1, 2]);
    expect(q.run()).toBe(0);
  });
});
