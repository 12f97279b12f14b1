import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BufferSink,
  BufferSource,
  bufferRecord,
  CkptError,
  FORMAT_MAJOR,
  headerRecord,
  ImageReader,
  ImageWriter,
  makeHeader,
  PARALLEL_CRC_MIN,
  RecordType,
  readHeader,
  runningConstants,
  sharedBuffer,
  stringRecord,
  validateHeader,
  walkImage,
  writeHeader,
} from '../../src/index.js';
import { registry, sampleImage, TricklePipe } from '../support/image.js';

function walk(data: Buffer, pipe = false) {
  const src = pipe ? new TricklePipe(data, 5) : new BufferSource(data);
  return [...walkImage(new ImageReader(src, (t) => registry.recordName(t)), registry)];
}

function expectCkptError(fn: () => unknown): CkptError {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof CkptError)) throw new Error(`expected CkptError, got ${String(e)}`);
    return e;
  }
  throw new Error('expected an error, got none');
}

describe('image framing', () => {
  it('writes 8-aligned records and reads them back, from a file or a trickling pipe', () => {
    const img = sampleImage();
    expect(img.length % 8).toBe(0);
    for (const pipe of [false, true]) {
      const views = walk(img, pipe);
      expect(views.map((v) => v.name)).toEqual([
        'header',
        'string',
        'objref',
        'buffer',
        'buffer',
        'tail',
      ]);
      expect(views[5]!.value).toMatchObject({ records: '5' });
      expect(views[1]!.value).toEqual({ value: 'hello, image' });
      expect(views[3]!.raw).toEqual({
        size: 19,
        head: Buffer.from('0123456789abcdefXYZ').toString('hex'),
      });
      expect(views[4]!.raw!.size).toBe(0);
      for (const v of views) expect(v.offset % 8).toBe(0);
    }
  });

  it('streams raw data in pieces without buffering the record', () => {
    const sink = new BufferSink();
    const w = new ImageWriter(sink);
    writeHeader(w, makeHeader({ archId: 1, nsig: 64 }));
    const big = Buffer.alloc(3 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    w.beginRaw(bufferRecord, big.length);
    for (let off = 0; off < big.length; off += 65536) w.rawChunk(big.subarray(off, off + 65536));
    w.endRaw();
    w.finish();
    const r = new ImageReader(new BufferSource(sink.contents()));
    readHeader(r);
    const h = r.next()!;
    const size = r.rawSize(h, bufferRecord);
    expect(size).toBe(big.length);
    const piece = Buffer.alloc(1 << 20);
    const got: Buffer[] = [];
    for (let left = size; left > 0; left -= piece.length) {
      r.rawRead(h, piece, 0, Math.min(piece.length, left));
      got.push(Buffer.from(piece));
    }
    r.skip(h);
    expect(Buffer.concat(got).equals(big)).toBe(true);
    expect(r.next()).toBeNull();
    expect(r.done).toBe(true);
  });

  it('lent buffers: refilling one after the next raw write or read keeps data and checksum exact', () => {
    const sink = new BufferSink();
    const w = new ImageWriter(sink);
    writeHeader(w, makeHeader({ archId: 1, nsig: 64 }));
    // Two shared buffers, summed on the worker, alternated as dumpers do:
    // each is refilled only after another writer call followed its loan.
    // Chunks of the worker's size and small ones (summed in place) mixed.
    const sizes = [2, 1, 2, 2, 1, 1, 2, 1].map((n) => (n === 2 ? PARALLEL_CRC_MIN : 4096));
    const bufs = [sharedBuffer(PARALLEL_CRC_MIN), sharedBuffer(PARALLEL_CRC_MIN)];
    const sent: Buffer[] = [];
    for (const [i, size] of sizes.entries()) {
      const buf = bufs[i % 2]!.subarray(0, size);
      buf.fill(i + 1);
      buf[i] = 0xee;
      w.write(stringRecord, { value: `chunk ${i}` });
      w.writeRaw(bufferRecord, buf, { lend: true });
      sent.push(Buffer.from(buf));
    }
    w.finish();
    const views = walk(sink.contents()); // throws on a checksum mismatch
    expect(views.filter((v) => v.name === 'buffer')).toHaveLength(sizes.length);
    // Read back the same way: into two shared buffers in turn, each
    // scribbled over as soon as the next raw read has started.
    const r = new ImageReader(new BufferSource(sink.contents()));
    readHeader(r);
    let previous: Buffer | undefined;
    for (const [i, size] of sizes.entries()) {
      expect(r.read(stringRecord).value).toBe(`chunk ${i}`);
      const h = r.next()!;
      expect(r.rawSize(h, bufferRecord)).toBe(size);
      const got = bufs[i % 2]!.subarray(0, size);
      r.rawRead(h, got);
      r.skip(h);
      expect(got.equals(sent[i]!)).toBe(true);
      previous?.fill(0x55);
      previous = got;
    }
    expect(r.next()).toBeNull(); // the tail's checksum holds
  });

  it('refuses a raw record that overflows or falls short of its declared size', () => {
    const w = new ImageWriter(new BufferSink());
    w.beginRaw(bufferRecord, 4);
    expect(() => w.rawChunk(Buffer.alloc(5))).toThrow(/overflows/);
    w.rawChunk(Buffer.alloc(2));
    expect(() => w.endRaw()).toThrow(/2 bytes short/);
  });

  it('an aborted checkpoint ends with an error record the reader reports', () => {
    const sink = new BufferSink();
    const w = new ImageWriter(sink);
    writeHeader(w, makeHeader({ archId: 1, nsig: 64 }));
    w.beginRaw(bufferRecord, 100);
    w.rawChunk(Buffer.alloc(10));
    w.abort('ESRCH', 'process 42 vanished', 42);
    const e = expectCkptError(() => walk(sink.contents()));
    expect(e.code).toBe('EIMAGEERR');
    expect(e.message).toContain('process 42 vanished');
    expect(e.context.pid).toBe(42);
    // checkEnd finds the same error before anything else is read.
    const early = expectCkptError(() =>
      new ImageReader(new BufferSource(sink.contents())).checkEnd(),
    );
    expect(early.code).toBe('EIMAGEERR');
    expect(early.message).toBe(e.message);
  });

  it('checkEnd: a whole image passes; a cut one is truncated; a pipe is left to reading', () => {
    const img = sampleImage();
    expect(() => new ImageReader(new BufferSource(img)).checkEnd()).not.toThrow();
    const views = walk(img);
    const last = views[views.length - 2]!; // the record before the tail
    for (const cut of [img.subarray(0, last.offset + last.len), img.subarray(0, img.length - 13)]) {
      const e = expectCkptError(() => new ImageReader(new BufferSource(cut)).checkEnd());
      expect(e.code).toBe('ETRUNC');
      expect(e.message).toMatch(/without a tail/);
      expect(() => new ImageReader(new TricklePipe(cut, 5)).checkEnd()).not.toThrow();
    }
  });
});

describe('bad images give a CkptError naming the offset', () => {
  const img = sampleImage();

  it('wrong magic', () => {
    const bad = Buffer.from(img);
    bad[8]! ^= 0xff;
    const e = expectCkptError(() => walk(bad));
    expect(e.code).toBe('EBADMAGIC');
  });

  it('not a header first', () => {
    const bad = Buffer.from(img);
    bad.writeUInt32LE(RecordType.STRING, 0);
    expect(expectCkptError(() => walk(bad)).code).toBe('EBADMAGIC');
  });

  it('unsupported version', () => {
    const bad = Buffer.from(img);
    bad.writeUInt16LE(FORMAT_MAJOR + 1, 16);
    const e = expectCkptError(() => walk(bad));
    expect(e.code).toBe('EVERSION');
    expect(e.message).toMatch(
      new RegExp(`version ${FORMAT_MAJOR + 1} \\(this ckpt reads version ${FORMAT_MAJOR}\\)`),
    );
  });

  it('truncated record, from a file and from a pipe', () => {
    for (const pipe of [false, true]) {
      const e = expectCkptError(() => walk(img.subarray(0, img.length - 13), pipe));
      expect(e.code).toBe('ETRUNC');
      expect(e.context.offset).toBeTypeOf('number');
    }
  });

  it('missing tail', () => {
    const views = walk(img);
    const last = views[views.length - 2]!; // the record before the tail
    const cut = img.subarray(0, last.offset + last.len);
    const e = expectCkptError(() => walk(cut, true));
    expect(e.code).toBe('ETRUNC');
    expect(e.message).toMatch(/without a tail/);
  });

  it('len beyond the stream, below the header size, misaligned', () => {
    const views = walk(img);
    const at = views[1]!.offset;
    const cases: [number, string][] = [
      [0x7fff_fff8, 'ETRUNC'],
      [4, 'EBADREC'],
      [27, 'EBADREC'],
    ];
    for (const [len, code] of cases) {
      const bad = Buffer.from(img);
      bad.writeUInt32LE(len, at + 4);
      const e = expectCkptError(() => walk(bad));
      expect(e.code).toBe(code);
      expect(e.context.offset).toBe(at);
    }
    // Over the structured-record limit on a pipe (size unknown): refused before allocating.
    const bad = Buffer.from(img);
    bad.writeUInt32LE(0x7fff_fff8, at + 4);
    const e = expectCkptError(() => walk(bad, true));
    expect(e.code).toBe('EBADREC');
    expect(e.message).toMatch(/above the .* limit/);
  });

  it('checksum mismatch', () => {
    const views = walk(img);
    const bad = Buffer.from(img);
    bad[views[1]!.offset + 12]! ^= 0x01; // inside the string payload
    const e = expectCkptError(() => walk(bad));
    expect(e.code).toBe('ECHECKSUM');
    expect(e.context.recordType).toBe(RecordType.TAIL);
  });

  it('data after the tail', () => {
    const e = expectCkptError(() => walk(Buffer.concat([img, Buffer.alloc(8)])));
    expect(e.code).toBe('ETRAILING');
  });

  it('an unexpected record where a specific one is required', () => {
    const r = new ImageReader(new BufferSource(img), (t) => registry.recordName(t));
    readHeader(r);
    const e = expectCkptError(() => r.read(headerRecord));
    expect(e.code).toBe('EUNEXPECTED');
    expect(e.message).toMatch(/expected a header \(1\) record at offset \d+, found string \(5\)/);
  });

  it('random corruptions: always a CkptError, never another failure', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          // flip one to four bytes
          fc.array(fc.tuple(fc.nat(img.length - 1), fc.integer({ min: 1, max: 255 })), {
            minLength: 1,
            maxLength: 4,
          }),
          // truncate
          fc.nat(img.length - 1).map((n) => ({ cut: n })),
          // append garbage
          fc.uint8Array({ minLength: 1, maxLength: 64 }).map((extra) => ({ extra })),
        ),
        fc.boolean(),
        (mutation, pipe) => {
          let bad: Buffer;
          if (Array.isArray(mutation)) {
            bad = Buffer.from(img);
            for (const [at, x] of mutation) bad[at]! ^= x;
          } else if ('cut' in mutation) {
            bad = img.subarray(0, mutation.cut);
          } else {
            bad = Buffer.concat([img, Buffer.from(mutation.extra)]);
          }
          expectCkptError(() => walk(bad, pipe));
        },
      ),
      { numRuns: 1000 },
    );
  });
});

describe('header validation', () => {
  it('accepts this system and refuses other arches or constants', () => {
    const h = makeHeader({ archId: 1, nsig: 64 });
    expect(() => validateHeader(h, { archId: 1, constants: runningConstants(64) })).not.toThrow();
    expect(() => validateHeader(h, { archId: 3, constants: runningConstants(64) })).toThrow(
      /taken on x86_64/,
    );
    expect(() => validateHeader(h, { archId: 1, constants: runningConstants(65) })).toThrow(
      /nsig is 64/,
    );
    const other = { ...h, constants: { ...h.constants, pageSize: 65536 } };
    expect(() => validateHeader(other, { archId: 1, constants: runningConstants(64) })).toThrow(
      /pageSize/,
    );
  });

  it('a stringRecord cannot be written inside an open raw record', () => {
    const w = new ImageWriter(new BufferSink());
    w.beginRaw(bufferRecord, 8);
    expect(() => w.write(stringRecord, { value: 'x' })).toThrow(/inside an open raw record/);
  });
});
