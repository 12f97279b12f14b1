import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { put64 } from '../../src/kernel/words.js';

describe('put64', () => {
  it('writes numbers and bigints as the 64-bit two’s complement word BigInt would', () => {
    const check = (v: bigint | number) => {
      const got = Buffer.alloc(16, 0xaa);
      put64(got, 4, v);
      const want = Buffer.alloc(16, 0xaa);
      want.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), 4);
      expect(got.equals(want)).toBe(true);
    };
    for (const v of [
      0,
      1,
      -1,
      -100,
      2 ** 32,
      -(2 ** 32),
      2 ** 53 - 1,
      -(2 ** 53) + 1,
      0x7fff_ffff_f000,
    ]) {
      check(v);
    }
    check(2n ** 64n - 1n);
    check(-(2n ** 63n));
    fc.assert(fc.property(fc.maxSafeInteger(), (v) => check(v)));
    fc.assert(fc.property(fc.bigInt(-(2n ** 63n), 2n ** 64n - 1n), (v) => check(v)));
  });
});
