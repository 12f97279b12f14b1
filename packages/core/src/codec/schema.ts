/**
 * One symmetric description per record (the seed's `CKPT_COPY()` idea): a
 * schema built from field codecs encodes, decodes, validates and prints a
 * value, so the checkpoint and restart sides can never drift apart.
 *
 * Wire rules: little-endian, unsigned (but `i32`), fields packed in declaration order.
 * Variable-size fields (strings, byte buffers, arrays) carry a u32 length
 * prefix. Record framing and 8-byte padding are the writer's business.
 */
import { CkptError } from '../errors.js';

/** Read position inside one record's payload. */
export class Cursor {
  pos = 0;
  constructor(
    readonly buf: Buffer,
    /** Stream offset of the record that holds this payload, for errors. */
    readonly recordOffset = 0,
    readonly recordType?: number,
  ) {}

  /** Bytes left in the payload. */
  get remaining(): number {
    return this.buf.length - this.pos;
  }

  /** Reserve `n` bytes, or throw a truncation error naming the record. */
  take(n: number, what: string): number {
    if (n > this.remaining) {
      throw new CkptError(
        'EBADREC',
        `record payload too short: ${what} needs ${n} bytes at payload byte ${this.pos}, ${this.remaining} left`,
        { offset: this.recordOffset, recordType: this.recordType },
      );
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  fail(message: string): never {
    throw new CkptError('EBADREC', message, {
      offset: this.recordOffset,
      recordType: this.recordType,
    });
  }
}

/** How a field is printed by `ckpt info`. */
export type FieldFormat = 'dec' | 'hex' | 'octal';

/** A codec for one field type. */
export interface Codec<T> {
  /** Short type name for documentation, e.g. `u32`, `str`, `u64[]`. */
  readonly typeName: string;
  /** Encoded size, or undefined when it depends on the value. */
  readonly fixedSize?: number;
  /** Smallest possible encoded size (bounds array counts when decoding). */
  readonly minSize: number;
  /** Largest length or count accepted (strings, buffers, arrays). */
  readonly limit?: number;
  /** Item codec (arrays) — lets tools and docs walk a schema. */
  readonly item?: Codec<any>;
  /** The value is a typed array rather than a JS array (see `u64s`). */
  readonly typedArray?: boolean;
  size(value: T): number;
  /** Validate `value` (throws EINVAL naming `path`). */
  check(value: T, path: string): void;
  write(value: T, buf: Buffer, off: number): number;
  read(cur: Cursor, path: string): T;
  /** JSON-safe form (bigints become decimal or hex strings). */
  json(value: T): unknown;
  /** Human form for `ckpt info`. */
  show(value: T): string;
}

function invalid(path: string, message: string): never {
  throw new CkptError('EINVAL', `${path}: ${message}`);
}

function numShow(v: number | bigint, fmt: FieldFormat): string {
  if (fmt === 'hex') return `0x${v.toString(16)}`;
  if (fmt === 'octal') return `0${v.toString(8)}`;
  return v.toString();
}

function uint(bytes: 1 | 2 | 4, fmt: FieldFormat, names?: Record<number, string>): Codec<number> {
  return int(bytes, false, fmt, names);
}

/** A little-endian integer of `bytes` bytes, two's complement when `signed`. */
function int(
  bytes: 1 | 2 | 4,
  signed: boolean,
  fmt: FieldFormat,
  names?: Record<number, string>,
): Codec<number> {
  const bits = bytes * 8;
  const min = signed ? -(2 ** (bits - 1)) : 0;
  const max = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
  const typeName = `${signed ? 'i' : 'u'}${bits}`;
  const article = signed ? 'an' : 'a';
  return {
    typeName,
    fixedSize: bytes,
    minSize: bytes,
    size: () => bytes,
    check(v, path) {
      if (!Number.isInteger(v) || v < min || v > max)
        invalid(path, `${v} is not ${article} ${typeName}`);
    },
    write(v, buf, off) {
      if (signed) buf.writeIntLE(v, off, bytes);
      else buf.writeUIntLE(v, off, bytes);
      return off + bytes;
    },
    read(cur, path) {
      const at = cur.take(bytes, path);
      return signed ? cur.buf.readIntLE(at, bytes) : cur.buf.readUIntLE(at, bytes);
    },
    json: (v) => (fmt === 'dec' ? v : numShow(v, fmt)),
    show: (v) => {
      const name = names?.[v];
      return name ? `${name} (${v})` : numShow(v, fmt);
    },
  };
}

/** Unsigned 8-bit integer. */
export const u8 = (fmt: FieldFormat = 'dec'): Codec<number> => uint(1, fmt);
/** Unsigned 16-bit integer. */
export const u16 = (fmt: FieldFormat = 'dec'): Codec<number> => uint(2, fmt);
/** Unsigned 32-bit integer; `names` maps values to names for printing. */
export const u32 = (fmt: FieldFormat = 'dec', names?: Record<number, string>): Codec<number> =>
  uint(4, fmt, names);

/**
 * Signed 32-bit integer (two's complement), for kernel `int`s that may be
 * negative: a sysctl's -1, a SysV IPC key.
 */
export function i32(fmt: FieldFormat = 'dec'): Codec<number> {
  return int(4, true, fmt);
}

const U64_MAX = (1n << 64n) - 1n;

/** Unsigned 64-bit integer, as a bigint (addresses, masks, register values). */
export function u64(fmt: FieldFormat = 'dec'): Codec<bigint> {
  return {
    typeName: 'u64',
    fixedSize: 8,
    minSize: 8,
    size: () => 8,
    check(v, path) {
      if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) invalid(path, `${v} is not a u64`);
    },
    write(v, buf, off) {
      buf.writeBigUInt64LE(v, off);
      return off + 8;
    },
    read(cur, path) {
      return cur.buf.readBigUInt64LE(cur.take(8, path));
    },
    json: (v) => (fmt === 'dec' ? v.toString() : numShow(v, fmt)),
    show: (v) => numShow(v, fmt),
  };
}

/** Boolean stored as a u8 (0 or 1; anything else is rejected on decode). */
export function bool(): Codec<boolean> {
  return {
    typeName: 'bool',
    fixedSize: 1,
    minSize: 1,
    size: () => 1,
    check(v, path) {
      if (typeof v !== 'boolean') invalid(path, `${v} is not a boolean`);
    },
    write(v, buf, off) {
      buf[off] = v ? 1 : 0;
      return off + 1;
    },
    read(cur, path) {
      const b = cur.buf[cur.take(1, path)];
      if (b !== 0 && b !== 1) cur.fail(`${path}: boolean byte is ${b}`);
      return b === 1;
    },
    json: (v) => v,
    show: (v) => String(v),
  };
}

/** UTF-8 string with a u32 byte-length prefix, at most `max` bytes. */
export function str(max = 4096): Codec<string> {
  return {
    typeName: 'str',
    minSize: 4,
    limit: max,
    size: (v) => 4 + Buffer.byteLength(v),
    check(v, path) {
      if (typeof v !== 'string') invalid(path, 'not a string');
      if (Buffer.byteLength(v) > max) invalid(path, `string longer than ${max} bytes`);
    },
    write(v, buf, off) {
      const n = buf.write(v, off + 4, 'utf8');
      buf.writeUInt32LE(n, off);
      return off + 4 + n;
    },
    read(cur, path) {
      const n = cur.buf.readUInt32LE(cur.take(4, path));
      if (n > max) cur.fail(`${path}: string length ${n} exceeds ${max}`);
      const at = cur.take(n, path);
      return cur.buf.toString('utf8', at, at + n);
    },
    json: (v) => v,
    show: (v) => JSON.stringify(v),
  };
}

/** Raw bytes with a u32 length prefix, at most `max` bytes. */
export function bytes(max = 1 << 20): Codec<Buffer> {
  return {
    typeName: 'bytes',
    minSize: 4,
    limit: max,
    size: (v) => 4 + v.length,
    check(v, path) {
      if (!Buffer.isBuffer(v)) invalid(path, 'not a Buffer');
      if (v.length > max) invalid(path, `buffer longer than ${max} bytes`);
    },
    write(v, buf, off) {
      buf.writeUInt32LE(v.length, off);
      v.copy(buf, off + 4);
      return off + 4 + v.length;
    },
    read(cur, path) {
      const n = cur.buf.readUInt32LE(cur.take(4, path));
      if (n > max) cur.fail(`${path}: buffer length ${n} exceeds ${max}`);
      const at = cur.take(n, path);
      return Buffer.from(cur.buf.subarray(at, at + n));
    },
    json: (v) => v.toString('hex'),
    show: (v) => showBytes(v),
  };
}

/** Exactly `n` raw bytes, no prefix (magic numbers, fixed register areas). */
export function fixed(n: number): Codec<Buffer> {
  return {
    typeName: `u8[${n}]`,
    fixedSize: n,
    minSize: n,
    size: () => n,
    check(v, path) {
      if (!Buffer.isBuffer(v) || v.length !== n) invalid(path, `must be exactly ${n} bytes`);
    },
    write(v, buf, off) {
      v.copy(buf, off);
      return off + n;
    },
    read(cur, path) {
      const at = cur.take(n, path);
      return Buffer.from(cur.buf.subarray(at, at + n));
    },
    json: (v) => v.toString('hex'),
    show: (v) => showBytes(v),
  };
}

function showBytes(v: Buffer): string {
  const head = v.subarray(0, 32).toString('hex');
  return v.length > 32 ? `${v.length} bytes: ${head}…` : `${v.length} bytes: ${head}`;
}

/** Array of `of` with a u32 count prefix, at most `max` items. */
export function array<T>(of: Codec<T>, max = 1 << 20): Codec<T[]> {
  return {
    typeName: `${of.typeName}[]`,
    minSize: 4,
    limit: max,
    item: of,
    size(v) {
      if (of.fixedSize !== undefined) return 4 + v.length * of.fixedSize;
      let n = 4;
      for (const item of v) n += of.size(item);
      return n;
    },
    check(v, path) {
      if (!Array.isArray(v)) invalid(path, 'not an array');
      if (v.length > max) invalid(path, `more than ${max} items`);
      for (let i = 0; i < v.length; i++) of.check(v[i] as T, `${path}[${i}]`);
    },
    write(v, buf, off) {
      buf.writeUInt32LE(v.length, off);
      let at = off + 4;
      for (const item of v) at = of.write(item, buf, at);
      return at;
    },
    read(cur, path) {
      const n = cur.buf.readUInt32LE(cur.take(4, path));
      // Bound the count by what the payload can hold before allocating.
      if (n > max || n * Math.max(of.minSize, 1) > cur.remaining) {
        cur.fail(`${path}: array count ${n} does not fit the record`);
      }
      const out: T[] = new Array(n);
      for (let i = 0; i < n; i++) out[i] = of.read(cur, `${path}[${i}]`);
      return out;
    },
    json: (v) => v.map((item) => of.json(item)),
    show: (v) =>
      v.length <= 8
        ? `[${v.map((item) => of.show(item)).join(', ')}]`
        : `[${v
            .slice(0, 8)
            .map((item) => of.show(item))
            .join(', ')}, … ${v.length} items]`,
  };
}

/**
 * Array of u64 held as a `BigUint64Array` (page addresses): same wire
 * format as `array(u64())`, but encoded and decoded as one block copy
 * instead of a bigint per item.
 */
export function u64s(max = 1 << 20, fmt: FieldFormat = 'hex'): Codec<BigUint64Array> {
  const item = u64(fmt);
  return {
    typeName: 'u64[]',
    minSize: 4,
    limit: max,
    item,
    typedArray: true,
    size: (v) => 4 + v.length * 8,
    check(v, path) {
      // By tag, not instanceof: typed arrays may come from another realm.
      if (
        !ArrayBuffer.isView(v) ||
        (v as BigUint64Array)[Symbol.toStringTag] !== 'BigUint64Array'
      ) {
        invalid(path, 'not a BigUint64Array');
      }
      if (v.length > max) invalid(path, `more than ${max} items`);
    },
    write(v, buf, off) {
      buf.writeUInt32LE(v.length, off);
      Buffer.from(v.buffer, v.byteOffset, v.byteLength).copy(buf, off + 4);
      return off + 4 + v.byteLength;
    },
    read(cur, path) {
      const n = cur.buf.readUInt32LE(cur.take(4, path));
      if (n > max || n * 8 > cur.remaining)
        cur.fail(`${path}: array count ${n} does not fit the record`);
      const at = cur.take(n * 8, path);
      const out = new BigUint64Array(n);
      Buffer.from(out.buffer).set(cur.buf.subarray(at, at + n * 8));
      return out;
    },
    json: (v) => Array.from(v, (x) => item.json(x)),
    show: (v) => array(item).show(Array.from(v)),
  };
}

/** Field map of a struct. */
export type Fields = Record<string, Codec<any>>;
/** The value type described by a field map. */
export type ValueOf<F extends Fields> = { [K in keyof F]: F[K] extends Codec<infer T> ? T : never };

/** A struct codec; exposes its fields so printers can walk them. */
export interface StructCodec<F extends Fields> extends Codec<ValueOf<F>> {
  readonly fields: F;
  /** Multi-line human form, one `name: value` per field, nested indented. */
  lines(value: ValueOf<F>, indent?: string): string[];
}

/** Nested struct of named fields, encoded in declaration order. */
export function struct<F extends Fields>(fields: F): StructCodec<F> {
  const entries = Object.entries(fields);
  let fixedSize: number | undefined = 0;
  let minSize = 0;
  for (const [, c] of entries) {
    fixedSize =
      fixedSize !== undefined && c.fixedSize !== undefined ? fixedSize + c.fixedSize : undefined;
    minSize += c.minSize;
  }
  const codec: StructCodec<F> = {
    typeName: 'struct',
    fields,
    fixedSize,
    minSize,
    size(v) {
      if (fixedSize !== undefined) return fixedSize;
      let n = 0;
      for (const [k, c] of entries) n += c.size(v[k]);
      return n;
    },
    check(v, path) {
      if (v === null || typeof v !== 'object') invalid(path, 'not an object');
      for (const [k, c] of entries) {
        if (!(k in v)) invalid(path, `missing field '${k}'`);
        c.check(v[k], path ? `${path}.${k}` : k);
      }
    },
    write(v, buf, off) {
      let at = off;
      for (const [k, c] of entries) at = c.write(v[k], buf, at);
      return at;
    },
    read(cur, path) {
      const out: Record<string, unknown> = {};
      for (const [k, c] of entries) out[k] = c.read(cur, path ? `${path}.${k}` : k);
      return out as ValueOf<F>;
    },
    json(v) {
      const out: Record<string, unknown> = {};
      for (const [k, c] of entries) out[k] = c.json(v[k]);
      return out;
    },
    show(v) {
      return `{ ${entries.map(([k, c]) => `${k}: ${c.show(v[k])}`).join(', ')} }`;
    },
    lines(v, indent = '') {
      const out: string[] = [];
      for (const [k, c] of entries) {
        const sub = c as Partial<StructCodec<Fields>>;
        if (sub.lines) {
          out.push(`${indent}${k}:`);
          out.push(...sub.lines(v[k] as ValueOf<Fields>, `${indent}  `));
        } else {
          out.push(`${indent}${k}: ${c.show(v[k])}`);
        }
      }
      return out;
    },
  };
  return codec;
}
