/**
 * The image as a whole: the header that opens it (magic, version, arch,
 * kernel constants), its validation against the running system, and a
 * record-by-record walk used by `ckpt info`.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import {
  FORMAT_MAJOR,
  FORMAT_MINOR,
  headerRecord,
  IMAGE_MAGIC,
  type kernelConstants,
  tailRecord,
} from './codec/core-records.js';
import type { ImageReader } from './codec/reader.js';
import type { RecordValue } from './codec/record.js';
import type { ValueOf } from './codec/schema.js';
import { ARCH_NAMES, ArchId, RecordType } from './codec/types.js';
import type { ImageWriter } from './codec/writer.js';
import { CkptError } from './errors.js';
import type { Registry } from './registry.js';

/** Decoded image header. */
export type ImageHeader = RecordValue<typeof headerRecord>;
/** Kernel constants saved in the header. */
export type KernelConstants = ValueOf<typeof kernelConstants.fields>;

const AT_PAGESZ = 6n;
// __NEW_UTS_LEN + 1: every utsname field of Linux.
const UTS_LEN = 65;
const TASK_COMM_LEN = 16;

/** The page size of the running kernel, from our own auxiliary vector. */
export function pageSize(): number {
  const auxv = fs.readFileSync('/proc/self/auxv');
  for (let i = 0; i + 16 <= auxv.length; i += 16) {
    if (auxv.readBigUInt64LE(i) === AT_PAGESZ) return Number(auxv.readBigUInt64LE(i + 8));
  }
  return 4096;
}

/** The arch id of this machine, or undefined when ckpt has no arch for it. */
export function hostArchId(): number | undefined {
  switch (os.machine()) {
    case 'x86_64':
      return ArchId.X86_64;
    case 's390x':
      return ArchId.S390X;
    default:
      return undefined;
  }
}

/** Kernel constants of the running system. `nsig` comes from the arch. */
export function runningConstants(nsig: number): KernelConstants {
  return {
    pageSize: pageSize(),
    nsig,
    taskCommLen: TASK_COMM_LEN,
    utsSysnameLen: UTS_LEN,
    utsNodenameLen: UTS_LEN,
    utsReleaseLen: UTS_LEN,
    utsVersionLen: UTS_LEN,
    utsMachineLen: UTS_LEN,
    utsDomainnameLen: UTS_LEN,
  };
}

/** Build the header for an image taken on this system. */
export function makeHeader(opts: { archId: number; nsig: number; uflags?: bigint }): ImageHeader {
  return {
    magic: IMAGE_MAGIC,
    major: FORMAT_MAJOR,
    minor: FORMAT_MINOR,
    archId: opts.archId,
    constants: runningConstants(opts.nsig),
    timeNs: BigInt(Date.now()) * 1_000_000n,
    uflags: opts.uflags ?? 0n,
    release: os.release().slice(0, 64),
    version: os.version().slice(0, 64),
    machine: os.machine().slice(0, 64),
    bootId: bootId(),
  };
}

/** This boot's id (/proc/sys/kernel/random/boot_id); '' where the kernel does not show it. */
export function bootId(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim().slice(0, 40);
  } catch {
    return '';
  }
}

/** Write the header record. */
export function writeHeader(writer: ImageWriter, header: ImageHeader): void {
  writer.write(headerRecord, header);
}

/**
 * Read and check the first record: it must be a header with our magic and
 * a format major version we understand.
 */
export function readHeader(reader: ImageReader): ImageHeader {
  let h: ReturnType<ImageReader['next']>;
  try {
    h = reader.next();
  } catch (e) {
    // A header cut short is a truncated image; anything else there is not
    // even a record's framing.
    if (e instanceof CkptError && e.code === 'ETRUNC') {
      e.message = `not a ckpt image, or one cut short at its start: ${e.message}`;
      throw e;
    }
    throw new CkptError(
      'EBADMAGIC',
      `not a ckpt image: its first bytes are not a ckpt record (${(e as Error).message})`,
      { offset: 0 },
      { cause: e },
    );
  }
  if (!h) throw new CkptError('EBADMAGIC', 'not a ckpt image: empty stream', { offset: 0 });
  if (h.type !== RecordType.HEADER) {
    throw new CkptError(
      'EBADMAGIC',
      `not a ckpt image: first record has type ${h.type}, expected a header (wrong magic)`,
      { offset: 0, recordType: h.type },
    );
  }
  const payload = reader.payload(h);
  if (
    payload.length < IMAGE_MAGIC.length ||
    !payload.subarray(0, IMAGE_MAGIC.length).equals(IMAGE_MAGIC)
  ) {
    throw new CkptError('EBADMAGIC', 'not a ckpt image: wrong magic in the header', {
      offset: 0,
      recordType: h.type,
    });
  }
  const major = payload.length >= 10 ? payload.readUInt16LE(8) : -1;
  if (major !== FORMAT_MAJOR) {
    throw new CkptError(
      'EVERSION',
      `unsupported image format version ${major} (this ckpt reads version ${FORMAT_MAJOR}); use a matching ckpt release`,
      { offset: 0, recordType: h.type },
    );
  }
  return headerRecord.decode(payload, h.offset);
}

/**
 * Refuse an image whose arch or kernel constants differ from this system's,
 * before anything is created (restart's first step).
 */
export function validateHeader(
  header: ImageHeader,
  running: { archId: number; constants: KernelConstants },
): void {
  if (header.archId !== running.archId) {
    throw new CkptError(
      'ENOTSUP',
      `image was taken on ${ARCH_NAMES[header.archId] ?? `arch ${header.archId}`}, this system is ${ARCH_NAMES[running.archId] ?? running.archId}`,
      { recordType: RecordType.HEADER, offset: 0 },
    );
  }
  for (const [k, v] of Object.entries(running.constants) as [keyof KernelConstants, number][]) {
    if (header.constants[k] !== v) {
      throw new CkptError(
        'ENOTSUP',
        `image kernel constant ${k} is ${header.constants[k]}, this kernel has ${v}; the image cannot be restarted here`,
        { recordType: RecordType.HEADER, offset: 0 },
      );
    }
  }
}

/** One record as `ckpt info` shows it. */
export interface RecordView {
  offset: number;
  type: number;
  /** Registered name, or `unknown`. */
  name: string;
  len: number;
  /** Decoded value (JSON-safe), for structured records. */
  value?: unknown;
  /** Human lines, for structured records. */
  lines?: string[];
  /** The decoded value itself, for structured records. */
  decoded?: unknown;
  /** Data size and leading bytes, for raw records. */
  raw?: { size: number; head: string };
}

/**
 * Walk a whole image, yielding each record decoded with the registry's
 * schemas; unknown record types are shown raw. The header is checked first
 * and the tail (count and checksum) last; any defect throws.
 */
export function* walkImage(reader: ImageReader, registry: Registry): Generator<RecordView> {
  const header = readHeader(reader);
  yield {
    offset: 0,
    type: RecordType.HEADER,
    name: 'header',
    len: reader.offset,
    value: headerRecord.toJSON(header),
    lines: headerRecord.format(header),
  };
  for (;;) {
    const h = reader.next();
    if (!h) {
      const tail = reader.tail!;
      const value = { records: tail.records, checksum: tail.checksum };
      yield {
        offset: tail.header.offset,
        type: tail.header.type,
        name: 'tail',
        len: tail.header.len,
        value: tailRecord.toJSON(value),
        lines: tailRecord.format(value),
      };
      return;
    }
    const kind = registry.recordKind(h.type);
    const view: RecordView = {
      offset: h.offset,
      type: h.type,
      name: kind?.name ?? 'unknown',
      len: h.len,
    };
    if (kind?.kind === 'struct') {
      const value = reader.decode(kind, h);
      view.value = kind.toJSON(value);
      view.lines = kind.format(value);
      view.decoded = value;
    } else if (kind?.kind === 'raw') {
      const size = reader.rawSize(h, kind);
      const head = Buffer.alloc(Math.min(size, 32));
      reader.rawRead(h, head);
      reader.skip(h);
      view.raw = { size, head: head.toString('hex') };
    } else {
      reader.skip(h);
    }
    yield view;
  }
}
