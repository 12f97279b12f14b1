/** Builds small valid images in memory for codec tests. */
import {
  BufferSink,
  type ByteSource,
  bufferRecord,
  corePlugin,
  ImageWriter,
  makeHeader,
  objrefRecord,
  Registry,
  stringRecord,
  writeHeader,
} from '../../src/index.js';

export const registry = new Registry([corePlugin]);

/** A valid image with one record of each core kind. */
export function sampleImage(): Buffer {
  const sink = new BufferSink();
  const w = new ImageWriter(sink);
  writeHeader(w, makeHeader({ archId: 1, nsig: 64, uflags: 5n }));
  w.write(stringRecord, { value: 'hello, image' });
  w.write(objrefRecord, { objType: 3, objref: 1 });
  w.writeRaw(bufferRecord, Buffer.from('0123456789abcdefXYZ'));
  w.writeRaw(bufferRecord, Buffer.alloc(0));
  w.finish();
  return sink.contents();
}

/** A source that hands out at most `step` bytes per read and hides its size, like a pipe. */
export class TricklePipe implements ByteSource {
  private pos = 0;
  readonly size = undefined;
  constructor(
    private readonly data: Buffer,
    private readonly step = 3,
  ) {}
  read(buf: Buffer, off: number, len: number): number {
    const n = Math.min(len, this.step, this.data.length - this.pos);
    this.data.copy(buf, off, this.pos, this.pos + n);
    this.pos += n;
    return n;
  }
  close(): void {}
}
