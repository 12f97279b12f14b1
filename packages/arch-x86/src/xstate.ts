/**
 * x86 extended processor state (x87, SSE, AVX, AVX-512, PKRU, ...), as
 * PTRACE_GETREGSET NT_X86_XSTATE returns it: the XSAVE standard
 * (non-compacted) layout.
 *
 * - bytes 0..511: the legacy FXSAVE area (x87, MXCSR, XMM0-15). Its
 *   software-usable tail at 464 holds, in the ptrace and core-dump format,
 *   XCR0 (the kernel's enabled feature mask) as one u64 — measured on Linux
 *   6.18. Signal frames put `struct _fpx_sw_bytes` there instead (magic1
 *   0x46505853, extended_size, xfeatures, xstate_size); both are decoded.
 * - bytes 512..575: the XSAVE header; XSTATE_BV says which components are
 *   not in their initial state.
 * - from 576: the extended components (AVX's upper YMM halves first).
 */
import { CkptError, getRegset, NT, setRegset } from '@ckpt/core';

/** Magic of `struct _fpx_sw_bytes` in signal frames ("XSFP"). */
export const FP_XSTATE_MAGIC1 = 0x46505853;
/** Offset of the software-usable bytes (XCR0, or `_fpx_sw_bytes`) in the legacy area. */
export const SW_BYTES_OFFSET = 464;
/** Offset of the XSAVE header. */
export const XSAVE_HEADER_OFFSET = 512;
/** Offset of XMM0 in the legacy area (16 bytes per register). */
export const XMM_OFFSET = 160;
/** Offset of the AVX component: the upper 128 bits of YMM0-15. */
export const YMM_HI128_OFFSET = 576;

/** Names of the XSAVE state components, by bit number. */
export const XFEATURE_NAMES: readonly string[] = [
  'x87',
  'SSE',
  'AVX',
  'MPX bndregs',
  'MPX bndcsr',
  'AVX-512 opmask',
  'AVX-512 ZMM_Hi256',
  'AVX-512 Hi16_ZMM',
  'PT',
  'PKRU',
  'PASID',
  'CET user',
  'CET supervisor',
  'HDC',
  'UINTR',
  'LBR',
  'HWP',
  'AMX TILECFG',
  'AMX TILEDATA',
  'APX',
];

// Big enough for every component including AMX tiles (~11 KiB).
const MAX_XSTATE_SIZE = 16384;

/** What an xstate buffer says about itself. */
export interface XstateInfo {
  /** XCR0 as the kernel exposes it: the components this buffer can hold. */
  xfeatures: bigint;
  /** Components that are not in their initial state. */
  xstateBv: bigint;
  /** Size of the xstate in bytes. */
  xstateSize: number;
}

/** Read the xstate of stopped tracee `pid`. */
export function readXstate(pid: number): Buffer {
  return getRegset(pid, NT.X86_XSTATE, MAX_XSTATE_SIZE);
}

/** Write the xstate of stopped tracee `pid` (a buffer from {@link readXstate}). */
export function writeXstate(pid: number, xstate: Buffer): void {
  setRegset(pid, NT.X86_XSTATE, xstate);
}

/**
 * Decode the feature mask and the XSAVE header of an xstate buffer, in the
 * ptrace format (XCR0 at 464) or the signal-frame format (fx_sw_bytes).
 */
export function decodeXstateInfo(xstate: Buffer): XstateInfo {
  if (xstate.length < XSAVE_HEADER_OFFSET + 64) {
    throw new CkptError(
      'EINVAL',
      `xstate buffer is ${xstate.length} bytes, too short for an XSAVE header`,
    );
  }
  const xstateBv = xstate.readBigUInt64LE(XSAVE_HEADER_OFFSET);
  if (xstate.readUInt32LE(SW_BYTES_OFFSET) === FP_XSTATE_MAGIC1) {
    return {
      xfeatures: xstate.readBigUInt64LE(SW_BYTES_OFFSET + 8),
      xstateSize: xstate.readUInt32LE(SW_BYTES_OFFSET + 16),
      xstateBv,
    };
  }
  const xfeatures = xstate.readBigUInt64LE(SW_BYTES_OFFSET);
  // x87 and SSE are always enabled on x86-64: anything else is not xstate.
  if ((xfeatures & 3n) !== 3n || (xstateBv & ~xfeatures) !== 0n) {
    throw new CkptError(
      'EINVAL',
      `xstate buffer has no valid feature mask (XCR0 0x${xfeatures.toString(16)}, XSTATE_BV 0x${xstateBv.toString(16)})`,
    );
  }
  return { xfeatures, xstateSize: xstate.length, xstateBv };
}

/** Names of the components in `mask` ("bit N" for unknown ones). */
export function xfeatureNames(mask: bigint): string[] {
  const names: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if ((mask >> BigInt(bit)) & 1n) names.push(XFEATURE_NAMES[bit] ?? `bit ${bit}`);
  }
  return names;
}

/**
 * Refuse to restore an image whose xstate uses components this CPU (or
 * kernel) does not enable: `imageMask` is the image's xfeatures, `cpuMask`
 * this machine's (e.g. from {@link decodeXstateInfo} of any local task).
 */
export function assertXstateCompatible(imageMask: bigint, cpuMask: bigint): void {
  const missing = imageMask & ~cpuMask;
  if (missing === 0n) return;
  throw new CkptError(
    'ENOTSUP',
    `the image uses CPU state components this machine does not support: ${xfeatureNames(missing).join(', ')} (image xfeatures 0x${imageMask.toString(16)}, this machine 0x${cpuMask.toString(16)}); restart it on a CPU with these features`,
  );
}

/** XMMn (16 bytes) from an xstate buffer. */
export function getXmm(xstate: Buffer, n: number): Buffer {
  return xstate.subarray(XMM_OFFSET + 16 * n, XMM_OFFSET + 16 * (n + 1));
}

/** YMMn (32 bytes: XMMn then its upper half from the AVX component). */
export function getYmm(xstate: Buffer, n: number): Buffer {
  const hi = xstate.subarray(YMM_HI128_OFFSET + 16 * n, YMM_HI128_OFFSET + 16 * (n + 1));
  return Buffer.concat([getXmm(xstate, n), hi]);
}
