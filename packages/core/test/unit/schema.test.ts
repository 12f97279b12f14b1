import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  array,
  bool,
  bytes,
  CkptError,
  Cursor,
  corePlugin,
  defineRecord,
  fixed,
  i32,
  type RecordSchema,
  str,
  struct,
  u8,
  u16,
  u32,
  u64,
  u64s,
} from '../../src/index.js';
import { arbitraryFor } from '../support/arbitrary.js';

const kitchenSink = defineRecord(7001, 'kitchen_sink', 'every field kind', {
  a: u8(),
  b: u16('hex'),
  c: u32('octal'),
  d: u64('hex'),
  e: bool(),
  f: str(40),
  g: bytes(100),
  h: fixed(5),
  i: array(u64(), 20),
  k: u64s(20),
  j: struct({ x: u32(), y: array(struct({ p: u8(), q: str(8) }), 4) }),
  l: i32(),
});

const schemas = [
  kitchenSink,
  ...(corePlugin.records ?? []).filter((k) => k.kind === 'struct'),
] as RecordSchema[];

describe('record schemas', () => {
  for (const schema of schemas) {
    it(`${schema.name} round-trips random values`, () => {
      fc.assert(
        fc.property(arbitraryFor(schema.codec), (value) => {
          const payload = schema.encode(value);
          // Records are padded to 8 bytes by the writer; decode must accept that.
          const padded = Buffer.concat([payload, Buffer.alloc((8 - (payload.length % 8)) % 8)]);
          expect(schema.decode(padded)).toEqual(value);
          expect(schema.decode(payload)).toEqual(value);
          expect(schema.format(value).length).toBeGreaterThan(0);
          expect(() => JSON.stringify(schema.toJSON(value))).not.toThrow();
        }),
        { numRuns: 200 },
      );
    });
  }

  it('rejects out-of-range values on encode with EINVAL naming the field', () => {
    const r = defineRecord(7002, 'small', 'x', { n: u16(), s: str(3) });
    expect(() => r.encode({ n: 70000, s: 'ok' })).toThrow(/small\.n: 70000 is not a u16/);
    expect(() => r.encode({ n: 1, s: 'toolong' })).toThrow(/small\.s: string longer than 3 bytes/);
    expect(() => r.encode({ n: 1 } as never)).toThrow(/missing field 's'/);
  });

  it('rejects payloads that are short, over-long or carry a huge array count', () => {
    const r = defineRecord(7003, 'arr', 'x', { xs: array(u64(), 1000) });
    const good = r.encode({ xs: [1n, 2n] });
    expect(() => r.decode(good.subarray(0, good.length - 1), 4242)).toThrow(CkptError);
    try {
      r.decode(good.subarray(0, 6), 4242);
    } catch (e) {
      expect((e as CkptError).context.offset).toBe(4242);
      expect((e as CkptError).context.recordType).toBe(7003);
    }
    const huge = Buffer.alloc(16);
    huge.writeUInt32LE(0xffff_fff0, 0);
    expect(() => r.decode(huge)).toThrow(/array count 4294967280 does not fit/);
    const trailing = Buffer.concat([good, Buffer.alloc(8, 1)]);
    expect(() => r.decode(trailing)).toThrow(/trailing payload bytes/);
  });

  it('prints nested structs and enum names', () => {
    const lines = kitchenSink.format({
      a: 1,
      b: 255,
      c: 8,
      d: 4096n,
      e: true,
      f: 'x',
      g: Buffer.from([1, 2]),
      h: Buffer.alloc(5),
      i: [],
      k: BigUint64Array.from([1n, 4096n]),
      j: { x: 3, y: [{ p: 1, q: 'q' }] },
      l: -1,
    });
    expect(lines).toContain('b: 0xff');
    expect(lines).toContain('c: 010');
    expect(lines).toContain('d: 0x1000');
    expect(lines).toContain('j:');
    expect(lines).toContain('  x: 3');
    expect(lines).toContain('l: -1');
    expect(u32('dec', { 1: 'x86_64' }).show(1)).toBe('x86_64 (1)');
  });

  it('Cursor errors carry offset and type', () => {
    const cur = new Cursor(Buffer.alloc(2), 96, 402);
    expect(() => cur.take(4, 'vma.start')).toThrow(/vma.start needs 4 bytes/);
  });
});
