/**
 * CRC-32 of the image stream, with the bulk of it computed on a second core.
 *
 * Page data dominates an image and CRC-32 over it costs about as much as
 * reading the pages. Large chunks that live in shared memory are handed to
 * a worker thread, which computes their CRC while the main thread does the
 * I/O; the partial CRCs are then joined with {@link crc32Combine}, so the
 * result is exactly zlib's CRC-32 of the whole stream. The main thread stays
 * synchronous: the hand-off uses Atomics on a shared control block.
 */
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import { crc32 } from 'node:zlib';

/** Chunks at least this large go to the worker, if they are in shared memory. */
export const PARALLEL_CRC_MIN = 1 << 20;

function gf2Times(mat: Uint32Array, vec: number): number {
  let sum = 0;
  let v = vec >>> 0;
  for (let i = 0; v !== 0; i++, v >>>= 1) if (v & 1) sum ^= mat[i]!;
  return sum >>> 0;
}

function gf2Square(square: Uint32Array, mat: Uint32Array): void {
  for (let n = 0; n < 32; n++) square[n] = gf2Times(mat, mat[n]!);
}

/**
 * The CRC-32 of A‖B from crc(A), crc(B) and B's length (zlib's
 * crc32_combine: multiply crc(A) by x^(8·len) in GF(2)).
 */
export function crc32Combine(crcA: number, crcB: number, lenB: number): number {
  if (lenB <= 0) return crcA >>> 0;
  // The multiplication is linear in crc(A): for a length seen before (a
  // stream's chunks all have the same size) its 32 columns are kept.
  let op = shiftOperators.get(lenB);
  if (!op && shiftSeen.has(lenB) && shiftOperators.size < 16) {
    op = new Uint32Array(32);
    for (let i = 0; i < 32; i++) op[i] = shiftByZeros(2 ** i, lenB);
    shiftOperators.set(lenB, op);
  }
  if (shiftSeen.size >= 256) shiftSeen.clear();
  shiftSeen.add(lenB);
  return ((op ? gf2Times(op, crcA) : shiftByZeros(crcA, lenB)) ^ crcB) >>> 0;
}

/** Operators x^(8·len) by len, for lengths asked for more than once. */
const shiftOperators = new Map<number, Uint32Array>();
const shiftSeen = new Set<number>();

/** crc multiplied by x^(8·len) in GF(2): the CRC of crc's message followed by len zeros, unconditioned. */
function shiftByZeros(crcA: number, lenB: number): number {
  const even = new Uint32Array(32);
  const odd = new Uint32Array(32);
  odd[0] = 0xedb88320; // the CRC-32 polynomial, reflected
  for (let n = 1, row = 1; n < 32; n++, row *= 2) odd[n] = row;
  gf2Square(even, odd); // operator for two zero bits
  gf2Square(odd, even); // four zero bits
  let crc = crcA >>> 0;
  let len = lenB;
  for (;;) {
    gf2Square(even, odd);
    if (len % 2) crc = gf2Times(even, crc);
    len = Math.floor(len / 2);
    if (len === 0) break;
    gf2Square(odd, even);
    if (len % 2) crc = gf2Times(odd, crc);
    len = Math.floor(len / 2);
    if (len === 0) break;
  }
  return crc >>> 0;
}

/** A Buffer over shared memory, which the CRC worker can read in place. */
export function sharedBuffer(size: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(size));
}

function isShared(buf: Buffer): boolean {
  return buf.buffer instanceof SharedArrayBuffer;
}

// Control block: [state, offset, length, result]; state 0 idle, 1 job, 2 done.
const IDLE = 0;
const JOB = 1;
const DONE = 2;

// The worker learns each shared buffer once, through a message port it
// drains synchronously when a job refers to a buffer it has not seen.
const WORKER_SOURCE = `
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const { crc32 } = require('node:zlib');
const ctl = new Int32Array(workerData.ctl);
const buffers = new Map();
for (;;) {
  Atomics.wait(ctl, 0, ${IDLE});
  if (Atomics.load(ctl, 0) !== ${JOB}) continue;
  for (let m; (m = receiveMessageOnPort(workerData.port)); ) {
    buffers.set(m.message.id, Buffer.from(m.message.sab));
  }
  const buf = buffers.get(ctl[4]);
  ctl[3] = crc32(buf.subarray(ctl[1], ctl[1] + ctl[2]), 0) | 0;
  Atomics.store(ctl, 0, ${DONE});
  Atomics.notify(ctl, 0);
}
`;

/** The worker and its control block, started on first large chunk. */
class CrcWorker {
  private readonly ctl = new Int32Array(new SharedArrayBuffer(5 * 4));
  // [state, offset, length, result, buffer id]
  private readonly worker: Worker;
  private readonly port: MessagePort;
  private readonly known = new WeakMap<SharedArrayBuffer, number>();
  private nextId = 1;

  constructor() {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { ctl: this.ctl.buffer, port: port2 },
      transferList: [port2],
    });
    // Never keeps ckpt alive: it only ever waits for work.
    this.worker.unref();
  }

  /** A job was started and its result not yet taken. */
  private busy = false;

  /**
   * Start the CRC of `buf` (shared) on the worker. A job nobody collected
   * (its stream was abandoned on an error) is waited for and dropped.
   */
  start(buf: Buffer): void {
    if (this.busy) this.finish();
    const sab = buf.buffer as SharedArrayBuffer;
    let id = this.known.get(sab);
    if (id === undefined) {
      id = this.nextId++;
      this.known.set(sab, id);
      this.port.postMessage({ id, sab });
    }
    this.ctl[1] = buf.byteOffset;
    this.ctl[2] = buf.length;
    this.ctl[4] = id;
    this.busy = true;
    Atomics.store(this.ctl, 0, JOB);
    Atomics.notify(this.ctl, 0);
  }

  /** Wait for the started CRC; returns it. */
  finish(): number {
    while (Atomics.load(this.ctl, 0) !== DONE) Atomics.wait(this.ctl, 0, JOB);
    const crc = this.ctl[3]! >>> 0;
    Atomics.store(this.ctl, 0, IDLE);
    this.busy = false;
    return crc;
  }
}

let shared: CrcWorker | undefined;

/** Images at least this large start the checksum worker up front. */
export const EARLY_CRC_WORKER_BYTES = 64 << 20;

/**
 * Start the checksum worker now rather than at the first large chunk:
 * it takes tens of milliseconds to boot, which then overlap with the
 * caller's work instead of delaying the first chunk. For callers that
 * know a large image is coming.
 */
export function startChecksumWorker(): void {
  shared ??= new CrcWorker();
}

/**
 * A running CRC-32 over a stream. `update` computes in place; `begin` hands
 * a large shared chunk to the worker and returns at once. Bytes added while
 * the worker sums a chunk are copied and summed after it when the chunk
 * settles (at the next `begin`, `settle` or `current`), so small records
 * between two large chunks never wait for the worker.
 */
export class StreamCrc {
  /** CRC of everything before the pending chunk. */
  private value = 0;
  private pending: { length: number } | undefined;
  /** Copies of the bytes added after the pending chunk. */
  private after: Buffer[] = [];

  /** The CRC of everything so far (settles a pending chunk first). */
  get current(): number {
    this.settle();
    return this.value >>> 0;
  }

  /** Add `data` synchronously. */
  update(data: Buffer): void {
    // zlib.crc32 of some empty views returns 0, not the seed: skip them.
    if (data.length === 0) return;
    if (this.pending) {
      // A copy: callers may reuse `data` at once. These are the records
      // between two chunks, a few KiB.
      this.after.push(Buffer.from(data));
    } else {
      this.value = crc32(data, this.value);
    }
  }

  /**
   * Add `data`, on the worker if it is large and in shared memory; the
   * caller must not modify `data` until the next `begin`, `settle` or
   * `current`. Every `begin` first releases the chunk of the one before,
   * whatever the size of its own.
   */
  begin(data: Buffer): void {
    this.settle();
    if (data.length < PARALLEL_CRC_MIN || !isShared(data)) {
      this.update(data);
      return;
    }
    shared ??= new CrcWorker();
    shared.start(data);
    this.pending = { length: data.length };
  }

  /** Wait for a chunk handed to the worker and fold it in. */
  settle(): void {
    if (!this.pending || !shared) return;
    const part = shared.finish();
    this.value = crc32Combine(this.value, part, this.pending.length);
    for (const data of this.after) this.value = crc32(data, this.value);
    this.pending = undefined;
    this.after = [];
  }
}
