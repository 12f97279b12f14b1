/**
 * Page contents: streamed in chunks of at most {@link CHUNK_PAGES} pages,
 * each a `pgarr` record (the addresses) and a raw `buffer` record (the
 * bytes), read from and written to the task through /proc/PID/mem. Only one
 * chunk is ever held in memory.
 */
import {
  bufferRecord,
  type CheckpointCtx,
  CkptError,
  PAGE_SIZE,
  type RestartCtx,
  readMemoryRanges,
  sharedBuffer,
  type TaskMemory,
} from '@ckpt/core';
import { pgarrRecord } from './records.js';

/** Pages per chunk: 4 MiB of data, 8 KiB of addresses. */
export const CHUNK_PAGES = 1024;
const PAGE = BigInt(PAGE_SIZE);

/** Contiguous page runs, as pagemap gives them. */
export interface PageRun {
  start: bigint;
  pages: number;
}

/** Total pages in `runs`. */
export function countPages(runs: readonly PageRun[]): number {
  let n = 0;
  for (const r of runs) n += r.pages;
  return n;
}

// Two buffers per process, in shared memory: while the image checksum of
// one chunk runs on another core, the next chunk is read into the other.
// Every chunk takes the other buffer than the last, across calls, so the
// one the writer or reader may still be summing is never refilled.
const chunkBuffers: Buffer[] = [];
let last = 0;
function nextChunkBuffer(_bytes?: number): Buffer {
  last ^= 1;
  chunkBuffers[last] ??= sharedBuffer(CHUNK_PAGES * PAGE_SIZE);
  return chunkBuffers[last]!;
}

/** Split runs into chunks of at most CHUNK_PAGES pages. */
function* chunks(runs: readonly PageRun[]): Generator<PageRun[]> {
  let out: PageRun[] = [];
  let n = 0;
  for (const run of runs) {
    let start = run.start;
    let left = run.pages;
    while (left > 0) {
      const take = Math.min(left, CHUNK_PAGES - n);
      out.push({ start, pages: take });
      n += take;
      left -= take;
      start += BigInt(take) * PAGE;
      if (n === CHUNK_PAGES) {
        yield out;
        out = [];
        n = 0;
      }
    }
  }
  if (n > 0) yield out;
}

/** Write the pages of `runs`, read from `mem`, as pgarr + buffer chunks. */
export function dumpPages(ctx: CheckpointCtx, mem: TaskMemory, runs: readonly PageRun[]): void {
  for (const part of chunks(runs)) {
    const buf = nextChunkBuffer();
    const addrs = new BigUint64Array(countPages(part));
    const bytes = addrs.length * PAGE_SIZE;
    const ranges = part.map((r) => ({ addr: r.start, length: r.pages * PAGE_SIZE }));
    readMemoryRanges(mem, ranges, buf.subarray(0, bytes));
    // Fill the addresses as 32-bit halves: user addresses fit in a double,
    // and this avoids a bigint per page.
    const halves = new Uint32Array(addrs.buffer);
    let n = 0;
    for (const run of part) {
      const start = Number(run.start);
      for (let i = 0; i < run.pages; i++, n++) {
        const a = start + i * PAGE_SIZE;
        halves[2 * n] = a >>> 0; // ToUint32 is the address modulo 2^32
        halves[2 * n + 1] = (a / 2 ** 32) | 0;
      }
    }
    ctx.write(pgarrRecord, { addrs });
    ctx.writer.writeRaw(bufferRecord, buf.subarray(0, bytes), { lend: true });
    ctx.stats.pages += addrs.length;
    ctx.progress.update(ctx.stats.pages);
  }
}

/**
 * Where the pages of a chunk are read to before `mem.write` gets them: by
 * default one of the two shared chunk buffers (summed on the checksum
 * worker, reused at once), or a buffer `mem` keeps until it writes them.
 */
export type ChunkBuffers = (bytes: number) => Buffer;

/**
 * Read `nrPages` pages of chunks and write them into `mem`; every address
 * must lie in [start, end).
 */
export function restorePages(
  ctx: RestartCtx,
  mem: TaskMemory,
  nrPages: number,
  range: { start: bigint; end: bigint },
  bufferFor: ChunkBuffers = nextChunkBuffer,
): void {
  let left = nrPages;
  while (left > 0) {
    const { addrs } = ctx.read(pgarrRecord);
    if (addrs.length === 0 || addrs.length > left || addrs.length > CHUNK_PAGES) {
      throw new CkptError(
        'EBADREC',
        `page chunk of ${addrs.length} pages where ${left} remain for this region`,
        {
          offset: ctx.reader.offset,
        },
      );
    }
    const h = ctx.nextRecord();
    const size = ctx.reader.rawSize(h, bufferRecord);
    if (size !== addrs.length * PAGE_SIZE) {
      throw new CkptError('EBADREC', `page data of ${size} bytes for ${addrs.length} pages`, {
        offset: h.offset,
        recordType: h.type,
      });
    }
    const buf = bufferFor(size);
    ctx.reader.rawRead(h, buf, 0, size);
    ctx.reader.skip(h);
    // Write runs of consecutive addresses with one call each. Addresses
    // are compared as doubles (exact below 2^53) read from 32-bit halves.
    const halves = new Uint32Array(addrs.buffer, addrs.byteOffset, addrs.length * 2);
    const at = (k: number) => halves[2 * k]! + halves[2 * k + 1]! * 2 ** 32;
    const lo = Number(range.start);
    const hi = Number(range.end);
    let i = 0;
    while (i < addrs.length) {
      const start = at(i);
      let j = i + 1;
      while (j < addrs.length && at(j) === start + (j - i) * PAGE_SIZE) j++;
      if (start < lo || start + (j - i) * PAGE_SIZE > hi || start % PAGE_SIZE !== 0) {
        throw new CkptError(
          'EBADREC',
          `pages at 0x${start.toString(16)} (${j - i}) lie outside their region 0x${lo.toString(16)}-0x${hi.toString(16)}`,
          { offset: h.offset },
        );
      }
      mem.write(BigInt(start), buf.subarray(i * PAGE_SIZE, j * PAGE_SIZE));
      i = j;
    }
    left -= addrs.length;
    ctx.stats.pages += addrs.length;
    ctx.progress.update(ctx.stats.pages);
  }
}
