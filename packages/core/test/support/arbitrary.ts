/** fast-check arbitraries derived from schema codecs, for round-trip tests. */
import fc from 'fast-check';
import type { Codec, StructCodec } from '../../src/index.js';

export function arbitraryFor(codec: Codec<any>): fc.Arbitrary<any> {
  const t = codec.typeName;
  if (t === 'u8') return fc.integer({ min: 0, max: 0xff });
  if (t === 'u16') return fc.integer({ min: 0, max: 0xffff });
  if (t === 'u32') return fc.integer({ min: 0, max: 0xffff_ffff });
  if (t === 'i32') return fc.integer({ min: -0x8000_0000, max: 0x7fff_ffff });
  if (t === 'u64') return fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
  if (t === 'bool') return fc.boolean();
  if (t === 'str') {
    // Bound by characters such that the UTF-8 length fits the limit.
    const limit = codec.limit ?? 64;
    return fc
      .string({ maxLength: limit, unit: 'grapheme' })
      .filter((s) => Buffer.byteLength(s) <= limit);
  }
  if (t === 'bytes') {
    return fc
      .uint8Array({ maxLength: Math.min(codec.limit ?? 64, 256) })
      .map((a) => Buffer.from(a));
  }
  const fixedMatch = /^u8\[(\d+)\]$/.exec(t);
  if (fixedMatch) {
    const n = Number(fixedMatch[1]);
    return fc.uint8Array({ minLength: n, maxLength: n }).map((a) => Buffer.from(a));
  }
  if (codec.typedArray) {
    return fc
      .array(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), { maxLength: 16 })
      .map((xs) => BigUint64Array.from(xs));
  }
  if (codec.item)
    return fc.array(arbitraryFor(codec.item), { maxLength: Math.min(codec.limit ?? 16, 16) });
  if (t === 'struct') {
    const fields = (codec as StructCodec<any>).fields;
    const rec: Record<string, fc.Arbitrary<any>> = {};
    for (const [k, c] of Object.entries(fields)) rec[k] = arbitraryFor(c as Codec<any>);
    return fc.record(rec);
  }
  throw new Error(`no arbitrary for codec type ${t}`);
}
