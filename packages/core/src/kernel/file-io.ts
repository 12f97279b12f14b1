/** Positioned reads and writes of a whole buffer (a read or write may do less than asked). */
import { readSync, writeSync } from 'node:fs';

/** `length` bytes of `fd` at `offset`; past the end of the file, zeros. */
export function readAt(fd: number, offset: bigint, length: number): Buffer {
  const data = Buffer.alloc(length);
  for (let done = 0; done < length; ) {
    const n = readSync(fd, data, done, length - done, Number(offset) + done);
    if (n === 0) break;
    done += n;
  }
  return data;
}

/** Write all of `data` to `fd` at `offset`. */
export function writeAt(fd: number, data: Buffer, offset: bigint): void {
  for (let done = 0; done < data.length; ) {
    done += writeSync(fd, data, done, data.length - done, Number(offset) + done);
  }
}
