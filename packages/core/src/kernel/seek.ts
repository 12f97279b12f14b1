/**
 * Where a file holds data: lseek(2) with SEEK_DATA / SEEK_HOLE. tmpfs and
 * shmem answer from their page cache and swap, so the pages of a shared
 * memory object that were never written (holes, which read as zeros) need
 * not be read or saved.
 */
import { errno, libc, sysError } from './libc.js';

const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const ENXIO = 6;

/** A byte range [start, end) of a file. */
export interface FileRange {
  start: bigint;
  end: bigint;
}

/**
 * The ranges of `fd` below `size` that hold data, in ascending order. A
 * filesystem without hole support reports the whole file as data.
 * @throws CkptError naming `what` when lseek fails (other than ENXIO: no
 *   data past the offset)
 */
export function dataRanges(fd: number, size: bigint, what: string): FileRange[] {
  const seek = (at: bigint, whence: number): bigint | undefined => {
    const r = BigInt(libc().lseek(fd, at, whence));
    if (r >= 0n) return r;
    const err = errno();
    if (err === ENXIO) return undefined;
    throw sysError('lseek', err, what, { fd });
  };
  const out: FileRange[] = [];
  let at = 0n;
  while (at < size) {
    const start = seek(at, SEEK_DATA);
    if (start === undefined || start >= size) break;
    // A hole always follows: the end of the file counts as one.
    const hole = seek(start, SEEK_HOLE) ?? size;
    const end = hole < size ? hole : size;
    out.push({ start, end });
    at = end;
  }
  return out;
}

/** A piece of a file's data: `length` bytes at `offset`. */
export interface FileChunk {
  offset: bigint;
  length: number;
}

/**
 * The data of `fd` below `size` (see {@link dataRanges}) cut into pieces
 * of at most `max` bytes: records of bounded size, holes left out.
 */
export function dataChunks(fd: number, size: bigint, what: string, max: number): FileChunk[] {
  const chunks: FileChunk[] = [];
  for (const r of dataRanges(fd, size, what)) {
    for (let at = r.start; at < r.end; at += BigInt(max)) {
      const left = r.end - at;
      chunks.push({ offset: at, length: left < BigInt(max) ? Number(left) : max });
    }
  }
  return chunks;
}
