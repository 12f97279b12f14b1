/**
 * Reads an image stream front to back without seeking. It holds at most one
 * structured record's payload; raw records (page data) are streamed to the
 * caller in pieces. Every malformation becomes a {@link CkptError} that
 * names the byte offset and the record type.
 */
import { crc32 } from 'node:zlib';
import { CkptError } from '../errors.js';
import { errorRecord, tailRecord } from './core-records.js';
import { StreamCrc } from './crc.js';
import type { ByteSource } from './io.js';
import {
  alignRecord,
  MAX_STRUCT_PAYLOAD,
  RAW_PREFIX_SIZE,
  type RawRecordKind,
  RECORD_ALIGN,
  RECORD_HEADER_SIZE,
  type RecordSchema,
} from './record.js';
import { RecordType } from './types.js';

/** Framing of one record as read from the stream. */
export interface RecordHeader {
  type: number;
  /** Total length including the 8-byte header and padding. */
  len: number;
  /** Stream offset of the record's first byte. */
  offset: number;
}

/** Names record types in error messages; the reader works without it. */
export type TypeNamer = (type: number) => string | undefined;

/** Streaming reader for one image. */
export class ImageReader {
  /** Bytes consumed so far. */
  offset = 0;
  /** Records consumed so far (excluding the tail). */
  records = 0;
  private readonly crc = new StreamCrc();
  /** The header of the record whose payload is being consumed. */
  private current: RecordHeader | null = null;
  /** Payload bytes of `current` not yet consumed. */
  private pending = 0;
  /** A header read ahead by {@link peek}. */
  private peeked: RecordHeader | null = null;
  private rawLeft = 0;
  private ended = false;
  /** The verified tail, once read: its framing and decoded value. */
  tail: { header: RecordHeader; records: bigint; checksum: number } | undefined;
  private readonly head = Buffer.allocUnsafe(RECORD_HEADER_SIZE);

  constructor(
    private readonly source: ByteSource,
    private readonly nameOf: TypeNamer = () => undefined,
  ) {}

  /** True once the tail has been read and verified. */
  get done(): boolean {
    return this.ended;
  }

  /** Describe a record type for messages: `vma (402)`. */
  describe(type: number): string {
    const name = this.nameOf(type);
    return name ? `${name} (${type})` : `type ${type}`;
  }

  /**
   * Look at the end of an image file before reading it: when it does not
   * end with a tail record, throw now what reading would find at the end
   * (the error of a failed checkpoint, or a truncation), so that restart
   * refuses the image before it creates anything. Streams that cannot be
   * read at an offset (pipes) are left to the reading itself.
   */
  checkEnd(): void {
    const { size } = this.source;
    if (size === undefined || !this.source.readAt) return;
    const tailLen = alignRecord(
      RECORD_HEADER_SIZE + tailRecord.encode({ records: 0n, checksum: 0 }).length,
    );
    const head = Buffer.alloc(RECORD_HEADER_SIZE);
    const headerAt = (at: number) =>
      this.source.readAt!(head, at) === RECORD_HEADER_SIZE
        ? { type: head.readUInt32LE(0), len: head.readUInt32LE(4), offset: at }
        : undefined;
    const last = size >= tailLen ? headerAt(size - tailLen) : undefined;
    if (last?.type === RecordType.TAIL && last.len === tailLen) return;
    // Walk the framing (headers only) to the record that ends the stream.
    let at = 0;
    for (;;) {
      const h = headerAt(at);
      if (!h || h.len < RECORD_HEADER_SIZE || h.len % RECORD_ALIGN !== 0 || at + h.len > size)
        break;
      if (h.type === RecordType.ERROR) {
        const payload = Buffer.alloc(h.len - RECORD_HEADER_SIZE);
        this.source.readAt(payload, at + RECORD_HEADER_SIZE);
        this.raiseImageError(h, errorRecord.decode(payload, h.offset));
      }
      if (h.type === RecordType.TAIL) return; // a tail, then trailing data: reading says so
      at += h.len;
    }
    throw new CkptError(
      'ETRUNC',
      `image ends at offset ${at} without a tail record (truncated or corrupt)`,
      { offset: at },
    );
  }

  /**
   * For a file: throw ECHECKSUM if the checksum in its tail does not match
   * its contents, read through `readAt` without moving the stream (a
   * whole pass over the file: for a header that looks wrong, to tell a
   * corrupt image from one of another machine). Nothing is checked for a
   * stream, or a file without a tail.
   */
  verifyChecksum(): void {
    const { size } = this.source;
    if (size === undefined || !this.source.readAt) return;
    const tailLen = alignRecord(
      RECORD_HEADER_SIZE + tailRecord.encode({ records: 0n, checksum: 0 }).length,
    );
    if (size < tailLen) return;
    const tailAt = size - tailLen;
    const tailBytes = Buffer.alloc(tailLen);
    if (this.source.readAt(tailBytes, tailAt) !== tailLen) return;
    if (tailBytes.readUInt32LE(0) !== RecordType.TAIL) return;
    const tail = tailRecord.decode(tailBytes.subarray(RECORD_HEADER_SIZE), tailAt);
    const chunk = Buffer.alloc(Math.min(4 << 20, Math.max(tailAt, 1)));
    let crc = 0;
    for (let at = 0; at < tailAt; ) {
      const want = Math.min(chunk.length, tailAt - at);
      const n = this.source.readAt(chunk.subarray(0, want), at);
      if (n <= 0) return;
      crc = crc32(chunk.subarray(0, n), crc);
      at += n;
    }
    if (tail.checksum !== crc >>> 0) {
      throw new CkptError(
        'ECHECKSUM',
        `image checksum mismatch at tail (offset ${tailAt}): stored 0x${tail.checksum.toString(16)}, computed 0x${(crc >>> 0).toString(16)}; the image is corrupt`,
        { offset: tailAt, recordType: RecordType.TAIL },
      );
    }
  }

  /** Look at the next record's framing without consuming it. */
  peek(): RecordHeader | null {
    if (!this.peeked) this.peeked = this.readHeader();
    return this.peeked;
  }

  /**
   * Consume the next record's framing. Returns null at the end of a
   * well-formed stream (after the tail has been verified). The tail and
   * error records are handled here, not returned.
   */
  next(): RecordHeader | null {
    const h = this.peek();
    this.peeked = null;
    if (!h) return null;
    this.current = h;
    this.pending = h.len - RECORD_HEADER_SIZE;
    if (h.type === RecordType.TAIL) {
      this.verifyTail(h);
      return null;
    }
    if (h.type === RecordType.ERROR) this.raiseImageError(h);
    this.records++;
    return h;
  }

  /** Consume the next record, which must be of `schema`'s type, and decode it. */
  read<T>(schema: RecordSchema<T>): T {
    const h = this.next();
    if (!h) {
      throw new CkptError(
        'EUNEXPECTED',
        `expected a ${this.describe(schema.type)} record, found the end of the image`,
        {
          offset: this.offset,
          recordType: schema.type,
        },
      );
    }
    this.expect(h, schema.type);
    return this.decode(schema, h);
  }

  /** Throw unless `h` is of type `type`. */
  expect(h: RecordHeader, type: number): void {
    if (h.type !== type) {
      throw new CkptError(
        'EUNEXPECTED',
        `expected a ${this.describe(type)} record at offset ${h.offset}, found ${this.describe(h.type)}`,
        { offset: h.offset, recordType: h.type },
      );
    }
  }

  /** Decode the payload of the current record with `schema`. */
  decode<T>(schema: RecordSchema<T>, h: RecordHeader): T {
    return schema.decode(this.payload(h), h.offset);
  }

  /** Read the whole payload (padding included) of the current structured record. */
  payload(h: RecordHeader): Buffer {
    this.assertCurrent(h);
    const n = this.pending;
    if (n > MAX_STRUCT_PAYLOAD) {
      throw new CkptError(
        'EBADREC',
        `record ${this.describe(h.type)} at offset ${h.offset} claims a ${n}-byte payload, above the ${MAX_STRUCT_PAYLOAD}-byte limit`,
        { offset: h.offset, recordType: h.type },
      );
    }
    const buf = Buffer.allocUnsafe(n);
    this.fill(buf, 0, n, h);
    this.pending = 0;
    return buf;
  }

  /** Begin streaming a raw record: returns its data size in bytes. */
  rawSize(h: RecordHeader, kind?: RawRecordKind): number {
    this.assertCurrent(h);
    if (kind) this.expect(h, kind.type);
    if (this.pending < RAW_PREFIX_SIZE) {
      throw this.bad(h, `raw record too short for its size prefix`);
    }
    const pre = Buffer.allocUnsafe(RAW_PREFIX_SIZE);
    this.fill(pre, 0, RAW_PREFIX_SIZE, h);
    this.pending -= RAW_PREFIX_SIZE;
    const size = pre.readBigUInt64LE(0);
    if (size > BigInt(this.pending) || BigInt(this.pending) - size >= BigInt(RECORD_ALIGN)) {
      throw this.bad(h, `raw record declares ${size} data bytes in a ${this.pending}-byte payload`);
    }
    this.rawLeft = Number(size);
    return this.rawLeft;
  }

  /**
   * Read the next `len` bytes of the current raw record into `buf`. A large
   * read into shared memory (see `sharedBuffer`) is summed on another core
   * while the caller goes on: leave those bytes unchanged until the next
   * `rawRead`. Bulk restorers alternate two buffers.
   */
  rawRead(h: RecordHeader, buf: Buffer, off = 0, len = buf.length - off): void {
    this.assertCurrent(h);
    if (len > this.rawLeft) throw this.bad(h, `read of ${len} bytes past the end of raw data`);
    this.fill(buf, off, len, h, false);
    this.crc.begin(buf.subarray(off, off + len));
    this.rawLeft -= len;
    this.pending -= len;
  }

  /** Read a whole (small) raw record's data. */
  rawAll(h: RecordHeader, max: number, kind?: RawRecordKind): Buffer {
    const n = this.rawSize(h, kind);
    if (n > max) throw this.bad(h, `raw record of ${n} bytes exceeds the ${max}-byte limit here`);
    const buf = Buffer.allocUnsafe(n);
    this.rawRead(h, buf);
    this.skip(h);
    return buf;
  }

  /** Discard whatever remains of the current record (payload or padding). */
  skip(h: RecordHeader): void {
    this.assertCurrent(h);
    const scratch = Buffer.allocUnsafe(Math.min(this.pending, 1 << 20));
    while (this.pending > 0) {
      const n = Math.min(this.pending, scratch.length);
      this.fill(scratch, 0, n, h);
      this.pending -= n;
    }
    this.rawLeft = 0;
  }

  private readHeader(): RecordHeader | null {
    if (this.ended) return null;
    if (this.current && this.pending > 0) {
      throw new CkptError(
        'EINVAL',
        `record at offset ${this.current.offset} was not fully consumed`,
      );
    }
    const at = this.offset;
    let got = 0;
    while (got < RECORD_HEADER_SIZE) {
      // Summed below, once it is known whether this is the tail.
      const n = this.readSome(this.head, got, RECORD_HEADER_SIZE - got, false);
      if (n === 0) break;
      got += n;
    }
    if (got === 0) {
      throw new CkptError(
        'ETRUNC',
        `image ends at offset ${at} without a tail record (truncated)`,
        {
          offset: at,
        },
      );
    }
    if (got < RECORD_HEADER_SIZE) {
      throw new CkptError('ETRUNC', `image truncated inside a record header at offset ${at}`, {
        offset: at,
      });
    }
    const type = this.head.readUInt32LE(0);
    const len = this.head.readUInt32LE(4);
    const h = { type, len, offset: at };
    // The tail's checksum covers everything before the tail's header; only
    // then does the reader wait for the worker's sums.
    if (type === RecordType.TAIL) this.crcBefore = this.crc.current;
    this.crc.update(this.head);
    if (len < RECORD_HEADER_SIZE) {
      throw this.bad(h, `record length ${len} is below the ${RECORD_HEADER_SIZE}-byte header size`);
    }
    if (len % RECORD_ALIGN !== 0) {
      throw this.bad(h, `record length ${len} is not a multiple of ${RECORD_ALIGN}`);
    }
    const size = this.source.size;
    if (size !== undefined && at + len > size) {
      throw new CkptError(
        'ETRUNC',
        `record ${this.describe(type)} at offset ${at} claims ${len} bytes but only ${size - at} remain in the image (truncated or corrupt length)`,
        { offset: at, recordType: type },
      );
    }
    return h;
  }

  private verifyTail(h: RecordHeader): void {
    const expectedCrc = this.crcBefore >>> 0;
    const tail = this.decode(tailRecord, h);
    if (tail.records !== BigInt(this.records)) {
      throw new CkptError(
        'ECHECKSUM',
        `tail at offset ${h.offset} counts ${tail.records} records but the image holds ${this.records}`,
        { offset: h.offset, recordType: h.type },
      );
    }
    if (tail.checksum !== expectedCrc) {
      throw new CkptError(
        'ECHECKSUM',
        `image checksum mismatch at tail (offset ${h.offset}): stored 0x${tail.checksum.toString(16)}, computed 0x${expectedCrc.toString(16)}; the image is corrupt`,
        { offset: h.offset, recordType: h.type },
      );
    }
    const probe = Buffer.allocUnsafe(1);
    if (this.source.read(probe, 0, 1) !== 0) {
      throw new CkptError(
        'ETRAILING',
        `unexpected data after the tail record at offset ${this.offset}`,
        {
          offset: this.offset,
        },
      );
    }
    this.ended = true;
    this.tail = { header: h, ...tail };
  }

  private raiseImageError(
    h: RecordHeader,
    e: ReturnType<typeof errorRecord.decode> = this.decode(errorRecord, h),
  ): never {
    throw new CkptError(
      'EIMAGEERR',
      `the image ends with the error of a failed checkpoint: [${e.code}] ${e.message}`,
      { offset: h.offset, recordType: h.type, ...(e.hasPid ? { pid: e.pid } : {}) },
    );
  }

  /** CRC of the stream up to the start of the record being read. */
  private crcBefore = 0;

  private fill(buf: Buffer, off: number, len: number, h: RecordHeader, sum = true): void {
    let done = 0;
    while (done < len) {
      const n = this.readSome(buf, off + done, len - done, sum);
      if (n === 0) {
        throw new CkptError(
          'ETRUNC',
          `image truncated inside record ${this.describe(h.type)} that starts at offset ${h.offset}`,
          { offset: h.offset, recordType: h.type },
        );
      }
      done += n;
    }
  }

  private readSome(buf: Buffer, off: number, len: number, sum = true): number {
    const n = this.source.read(buf, off, len);
    if (n > 0) {
      if (sum) this.crc.update(buf.subarray(off, off + n));
      this.offset += n;
    }
    return n;
  }

  private assertCurrent(h: RecordHeader): void {
    if (this.current !== h) {
      throw new CkptError('EINVAL', `record at offset ${h.offset} is not the current record`);
    }
  }

  private bad(h: RecordHeader, message: string): CkptError {
    return new CkptError(
      'EBADREC',
      `${this.describe(h.type)} record at offset ${h.offset}: ${message}`,
      {
        offset: h.offset,
        recordType: h.type,
      },
    );
  }
}
