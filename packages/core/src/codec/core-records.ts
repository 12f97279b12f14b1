/**
 * The records core owns: framing (header, arch header, tail, error) and
 * the generic payloads (buffer, string, objref).
 */
import { defineRawRecord, defineRecord } from './record.js';
import { bool, bytes, fixed, str, struct, u16, u32, u64 } from './schema.js';
import { ARCH_NAMES, RecordType } from './types.js';

/** The 8 magic bytes that open every image's header payload. */
export const IMAGE_MAGIC = Buffer.from('CKPTimg\0', 'latin1');
/** Image format major version; a reader refuses any other major. */
export const FORMAT_MAJOR = 12;
/** Image format minor version; additions that old readers may ignore. */
export const FORMAT_MINOR = 0;

/**
 * Kernel constants saved in the header. Restart compares them with the
 * running kernel before it creates anything.
 */
export const kernelConstants = struct({
  pageSize: u32(),
  nsig: u32(),
  taskCommLen: u32(),
  utsSysnameLen: u32(),
  utsNodenameLen: u32(),
  utsReleaseLen: u32(),
  utsVersionLen: u32(),
  utsMachineLen: u32(),
  utsDomainnameLen: u32(),
});

/** First record of every image. */
export const headerRecord = defineRecord(RecordType.HEADER, 'header', 'image header', {
  magic: fixed(8),
  major: u16(),
  minor: u16(),
  archId: u32('dec', ARCH_NAMES),
  constants: kernelConstants,
  timeNs: u64(),
  uflags: u64('hex'),
  release: str(64),
  version: str(64),
  machine: str(64),
  /** /proc/sys/kernel/random/boot_id at checkpoint: restart on the same boot may compare device and inode numbers. */
  bootId: str(40),
});

/** Architecture capabilities, right after the header. */
export const headerArchRecord = defineRecord(
  RecordType.HEADER_ARCH,
  'header_arch',
  'architecture capabilities (e.g. x86 xstate features)',
  {
    archId: u32('dec', ARCH_NAMES),
    /** Arch-defined feature mask, e.g. XCR0 on x86. */
    features: u64('hex'),
    /** Arch-defined size of the extended register area. */
    xstateSize: u32(),
    /** Arch-defined extra data. */
    data: bytes(4096),
  },
);

/** Opaque bytes; streamed. */
export const bufferRecord = defineRawRecord(RecordType.BUFFER, 'buffer', 'raw data (streamed)');

/** A standalone string. */
export const stringRecord = defineRecord(RecordType.STRING, 'string', 'string', {
  value: str(1 << 16),
});

/**
 * Precedes the record(s) of a shared object at its first appearance: the
 * object type and the objref later records use to refer to it.
 */
export const objrefRecord = defineRecord(RecordType.OBJREF, 'objref', 'shared object definition', {
  objType: u32(),
  objref: u32(),
});

/** Last record: how many records precede it and their CRC-32. */
export const tailRecord = defineRecord(RecordType.TAIL, 'tail', 'end of image', {
  records: u64(),
  checksum: u32('hex'),
});

/** Ends the stream of a checkpoint that failed. */
export const errorRecord = defineRecord(RecordType.ERROR, 'error', 'checkpoint failed', {
  code: str(32),
  message: str(4096),
  hasPid: bool(),
  pid: u32(),
});
