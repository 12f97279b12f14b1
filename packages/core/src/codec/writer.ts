/**
 * Writes an image stream: records framed as `{type, len}` + payload + zero
 * padding, a running CRC-32 of every byte, and the tail record at the end.
 * Small records are batched in a buffer; bulk data goes straight through.
 */
import { CkptError } from '../errors.js';
import { errorRecord, tailRecord } from './core-records.js';
import { StreamCrc } from './crc.js';
import type { ByteSink } from './io.js';
import {
  alignRecord,
  RAW_PREFIX_SIZE,
  type RawRecordKind,
  RECORD_HEADER_SIZE,
  type RecordSchema,
} from './record.js';

const BATCH = 1 << 20;
const ZEROS = Buffer.alloc(8);

/** Streaming writer for one image. */
export class ImageWriter {
  /** Bytes written so far (also the offset of the next record). */
  offset = 0;
  /** Records written so far (the tail does not count itself). */
  records = 0;
  private readonly crc = new StreamCrc();
  private batch = Buffer.allocUnsafe(BATCH);
  private batched = 0;
  private openRaw: { remaining: number; pad: number; name: string } | null = null;
  private finished = false;

  constructor(private readonly sink: ByteSink) {}

  /** Encode and write one structured record. Returns its offset. */
  write<T>(schema: RecordSchema<T>, value: T): number {
    const payload = schema.encode(value);
    return this.writeFramed(schema.type, payload);
  }

  /**
   * Write a raw record whose whole payload is in memory.
   *
   * With `lend`, a large `data` in shared memory may still be read (its
   * checksum computed on another core) when this returns: the caller must
   * leave it unchanged until its next `writeRaw` or `rawChunk`, or
   * `finish`. Bulk dumpers fill a second buffer while the first is summed.
   */
  writeRaw(kind: RawRecordKind, data: Buffer, opts: { lend?: boolean } = {}): number {
    const at = this.beginRaw(kind, data.length);
    this.rawChunk(data, opts);
    this.endRaw();
    return at;
  }

  /**
   * Start a raw record of exactly `size` bytes; send them with
   * {@link rawChunk} and close with {@link endRaw}. Returns its offset.
   */
  beginRaw(kind: RawRecordKind, size: number): number {
    this.assertOpen();
    const len = alignRecord(RECORD_HEADER_SIZE + RAW_PREFIX_SIZE + size);
    const at = this.offset;
    const head = Buffer.alloc(RECORD_HEADER_SIZE + RAW_PREFIX_SIZE);
    head.writeUInt32LE(kind.type, 0);
    head.writeUInt32LE(this.checkLen(len, kind.name), 4);
    head.writeBigUInt64LE(BigInt(size), 8);
    this.put(head);
    this.openRaw = {
      remaining: size,
      pad: len - RECORD_HEADER_SIZE - RAW_PREFIX_SIZE - size,
      name: kind.name,
    };
    this.records++;
    return at;
  }

  /** Append bytes to the open raw record (`lend` as for {@link writeRaw}). */
  rawChunk(data: Buffer, opts: { lend?: boolean } = {}): void {
    const raw = this.openRaw;
    if (!raw) throw new CkptError('EINVAL', 'rawChunk() without beginRaw()');
    if (data.length > raw.remaining) {
      throw new CkptError('EINVAL', `${raw.name} record overflows its declared size`);
    }
    raw.remaining -= data.length;
    // The buffer lent with the previous raw bytes is released now, so
    // callers may refill it (whatever the size of these).
    this.crc.settle();
    this.put(data, opts.lend ?? false);
  }

  /** Close the open raw record (all declared bytes must have been sent). */
  endRaw(): void {
    const raw = this.openRaw;
    if (!raw) throw new CkptError('EINVAL', 'endRaw() without beginRaw()');
    if (raw.remaining !== 0) {
      throw new CkptError('EINVAL', `${raw.name} record is ${raw.remaining} bytes short`);
    }
    this.put(ZEROS.subarray(0, raw.pad));
    this.openRaw = null;
  }

  /** End the stream with the tail record and flush. */
  finish(): void {
    this.assertOpen();
    const value = { records: BigInt(this.records), checksum: this.crcNow() };
    this.writeFramed(tailRecord.type, tailRecord.encode(value), false);
    this.flush();
    this.finished = true;
  }

  /**
   * End a failed stream with an error record (no tail), so a reader
   * reports why the checkpoint failed instead of a bare truncation.
   */
  abort(code: string, message: string, pid?: number): void {
    if (this.finished) return;
    if (this.openRaw) {
      // Pad out the open raw record so the error record stays framed.
      const fill = Buffer.alloc(Math.min(this.openRaw.remaining, 1 << 20));
      while (this.openRaw.remaining > 0) {
        this.rawChunk(fill.subarray(0, Math.min(fill.length, this.openRaw.remaining)));
      }
      this.endRaw();
    }
    this.write(errorRecord, {
      code: code.slice(0, 32),
      message: message.slice(0, 4096),
      hasPid: pid !== undefined,
      pid: pid ?? 0,
    });
    this.flush();
    this.finished = true;
  }

  /** Push batched bytes to the sink. */
  flush(): void {
    if (this.batched === 0) return;
    this.sink.write(this.batch.subarray(0, this.batched));
    // The sink may keep a reference (BufferSink copies, FdSink writes
    // synchronously), so reusing the batch buffer is safe.
    this.batched = 0;
  }

  private writeFramed(type: number, payload: Buffer, count = true): number {
    this.assertOpen();
    if (this.openRaw)
      throw new CkptError('EINVAL', `record ${type} written inside an open raw record`);
    const at = this.offset;
    const len = this.checkLen(alignRecord(RECORD_HEADER_SIZE + payload.length), String(type));
    const head = Buffer.allocUnsafe(RECORD_HEADER_SIZE);
    head.writeUInt32LE(type, 0);
    head.writeUInt32LE(len, 4);
    this.put(head);
    this.put(payload);
    this.put(ZEROS.subarray(0, len - RECORD_HEADER_SIZE - payload.length));
    if (count) this.records++;
    return at;
  }

  private checkLen(len: number, name: string): number {
    if (len > 0xffff_ffff) {
      throw new CkptError(
        'EINVAL',
        `${name} record of ${len} bytes exceeds the 4 GiB record limit`,
      );
    }
    return len;
  }

  private put(data: Buffer, lend = false): void {
    if (data.length === 0) return;
    this.offset += data.length;
    if (data.length >= BATCH / 4) {
      this.flush();
      // Large (page) data: its CRC runs on the worker during the write,
      // and past it when the caller lent the buffer (the next large put,
      // or crcNow, waits for it).
      this.crc.begin(data);
      this.sink.write(data);
      if (!lend) this.crc.settle();
      return;
    }
    this.crc.update(data);
    if (this.batched + data.length > BATCH) this.flush();
    data.copy(this.batch, this.batched);
    this.batched += data.length;
  }

  private crcNow(): number {
    return this.crc.current;
  }

  private assertOpen(): void {
    if (this.finished) throw new CkptError('EINVAL', 'image already finished');
  }
}
