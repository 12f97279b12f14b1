import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32Combine, PARALLEL_CRC_MIN, StreamCrc, sharedBuffer } from '../../src/index.js';

describe('CRC-32 of the stream', () => {
  it('crc32Combine joins two CRCs exactly as zlib sums the concatenation', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 }), (a, b) => {
        const whole = crc32(Buffer.concat([a, b]));
        expect(crc32Combine(crc32(a), crc32(b), b.length)).toBe(whole >>> 0);
      }),
      { numRuns: 300 },
    );
  });

  it('crc32Combine gives the same result once a length is cached as an operator', () => {
    const b = Buffer.alloc(4096, 0x5a);
    for (let i = 0; i < 4; i++) {
      const a = Buffer.from(`part ${i}`);
      expect(crc32Combine(crc32(a), crc32(b), b.length)).toBe(crc32(Buffer.concat([a, b])) >>> 0);
    }
  });

  it('StreamCrc gives zlib’s CRC with large shared chunks summed on the worker', () => {
    const big = sharedBuffer(3 * PARALLEL_CRC_MIN);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + 7) & 0xff;
    const small = Buffer.from('header bytes');
    const s = new StreamCrc();
    s.update(small);
    s.begin(big.subarray(0, 2 * PARALLEL_CRC_MIN)); // worker
    s.begin(big.subarray(2 * PARALLEL_CRC_MIN)); // worker again, after the first settles
    s.update(small);
    const expected = crc32(Buffer.concat([small, big, small])) >>> 0;
    expect(s.current).toBe(expected);
  });

  it('StreamCrc sums bytes added during a worker chunk as they were, even if reused at once', () => {
    const big = sharedBuffer(PARALLEL_CRC_MIN);
    big.fill(3);
    const rec = Buffer.from('a record between chunks');
    const s = new StreamCrc();
    s.begin(big);
    s.update(rec);
    const expected = crc32(Buffer.concat([big, rec])) >>> 0;
    rec.fill(0); // the writer reuses its record buffer
    expect(s.current).toBe(expected);
  });
});
