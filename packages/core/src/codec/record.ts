/**
 * Record kinds. A record on the wire is `{type: u32, len: u32}` (len counts
 * the 8-byte header) followed by the payload and zero padding to 8 bytes.
 * A {@link RecordSchema} names a type number and describes its payload once.
 */
import { CkptError } from '../errors.js';
import { Cursor, type Fields, type StructCodec, struct, type ValueOf } from './schema.js';

/** Size of the `{type, len}` record header. */
export const RECORD_HEADER_SIZE = 8;
/** Records are padded to this alignment. */
export const RECORD_ALIGN = 8;
/** Size of the byte-count prefix of a raw record's payload. */
export const RAW_PREFIX_SIZE = 8;
/**
 * Largest payload a structured record may have. Bulk data (pages, pipe
 * buffers) travels in raw records, which are streamed, not buffered.
 */
export const MAX_STRUCT_PAYLOAD = 64 << 20;

/** Round `n` up to the record alignment. */
export const alignRecord = (n: number): number => (n + RECORD_ALIGN - 1) & ~(RECORD_ALIGN - 1);

/**
 * A record kind whose payload is a struct. One declaration encodes,
 * decodes, validates and prints.
 */
export interface RecordSchema<T = any> {
  readonly kind: 'struct';
  readonly type: number;
  /** Short lower-case name, e.g. `header`, `vma`, `file`. */
  readonly name: string;
  readonly description: string;
  readonly codec: StructCodec<Fields>;
  encode(value: T): Buffer;
  /** Decode a whole payload; trailing bytes are an error. */
  decode(payload: Buffer, recordOffset?: number): T;
  /** JSON-safe value. */
  toJSON(value: T): unknown;
  /** Multi-line human form. */
  format(value: T): string[];
}

/**
 * A record kind whose payload is opaque bytes of any length (page
 * contents, pipe data). Readers stream it instead of buffering it. On the
 * wire its payload is a u64 byte count, the bytes, then zero padding.
 */
export interface RawRecordKind {
  readonly kind: 'raw';
  readonly type: number;
  readonly name: string;
  readonly description: string;
}

/** Any record kind a catalog can hold. */
export type RecordKind = RecordSchema | RawRecordKind;

/** Declare a struct record kind. */
export function defineRecord<F extends Fields>(
  type: number,
  name: string,
  description: string,
  fields: F,
): RecordSchema<ValueOf<F>> {
  const codec = struct(fields);
  return {
    kind: 'struct',
    type,
    name,
    description,
    codec: codec as StructCodec<Fields>,
    encode(value) {
      codec.check(value, name);
      const size = codec.size(value);
      if (size > MAX_STRUCT_PAYLOAD) {
        throw new CkptError(
          'EINVAL',
          `${name} record of ${size} bytes exceeds the structured-record limit`,
        );
      }
      const buf = Buffer.alloc(size);
      codec.write(value, buf, 0);
      return buf;
    },
    decode(payload, recordOffset = 0) {
      const cur = new Cursor(payload, recordOffset, type);
      const value = codec.read(cur, name);
      // Only the zero padding to the 8-byte record boundary may follow.
      if (cur.remaining >= RECORD_ALIGN || cur.buf.subarray(cur.pos).some((b) => b !== 0)) {
        cur.fail(`${name} record has ${cur.remaining} unexpected trailing payload bytes`);
      }
      return value;
    },
    toJSON: (value) => codec.json(value),
    format: (value) => codec.lines(value),
  };
}

/** Declare a raw (streamed) record kind. */
export function defineRawRecord(type: number, name: string, description: string): RawRecordKind {
  return { kind: 'raw', type, name, description };
}

/** Value type of a record schema. */
export type RecordValue<S> = S extends RecordSchema<infer T> ? T : never;
