/**
 * prctl(2) constants and the `struct prctl_mm_map` encoder for
 * PR_SET_MM / PR_SET_MM_MAP, which restart injects into the task whose
 * address space it rebuilds (the struct must live in that task's memory).
 */
import { errno, libc, sysError } from './libc.js';

/** prctl options ckpt uses. */
export const PR = {
  SET_PDEATHSIG: 1,
  GET_DUMPABLE: 3,
  SET_DUMPABLE: 4,
  SET_NAME: 15,
  GET_NAME: 16,
  GET_SECCOMP: 21,
  SET_SECCOMP: 22,
  CAPBSET_READ: 23,
  SET_CHILD_SUBREAPER: 36,
  GET_CHILD_SUBREAPER: 37,
  SET_NO_NEW_PRIVS: 38,
  GET_TID_ADDRESS: 40,
  SET_MM: 35,
  /** Arg 1: timer_create takes the id asked for; 0: it stops; 2: reads the setting. */
  TIMER_CREATE_RESTORE_IDS: 77,
} as const;

/** PR_SET_MM sub-options. */
export const PR_SET_MM = {
  START_CODE: 1,
  END_CODE: 2,
  START_DATA: 3,
  END_DATA: 4,
  START_STACK: 5,
  START_BRK: 6,
  BRK: 7,
  ARG_START: 8,
  ARG_END: 9,
  ENV_START: 10,
  ENV_END: 11,
  AUXV: 12,
  EXE_FILE: 13,
  MAP: 14,
  MAP_SIZE: 15,
} as const;

/** The fields of `struct prctl_mm_map` (linux/prctl.h). */
export interface PrctlMmMap {
  startCode: bigint;
  endCode: bigint;
  startData: bigint;
  endData: bigint;
  startBrk: bigint;
  brk: bigint;
  startStack: bigint;
  argStart: bigint;
  argEnd: bigint;
  envStart: bigint;
  envEnd: bigint;
  /** Address of the auxv words in the target task, or 0. */
  auxv: bigint;
  /** Size of the auxv in bytes. */
  auxvSize: number;
  /** An fd in the target task for the new /proc/PID/exe, or -1 to keep it. */
  exeFd: number;
}

/** sizeof(struct prctl_mm_map): 12 u64, then two u32. */
export const PRCTL_MM_MAP_SIZE = 104;

/** Encode a `struct prctl_mm_map` (little-endian, 104 bytes). */
export function encodePrctlMmMap(m: PrctlMmMap): Buffer {
  const buf = Buffer.alloc(PRCTL_MM_MAP_SIZE);
  const words = [
    m.startCode,
    m.endCode,
    m.startData,
    m.endData,
    m.startBrk,
    m.brk,
    m.startStack,
    m.argStart,
    m.argEnd,
    m.envStart,
    m.envEnd,
    m.auxv,
  ];
  words.forEach((w, i) => {
    buf.writeBigUInt64LE(BigInt.asUintN(64, w), i * 8);
  });
  buf.writeUInt32LE(m.auxvSize, 96);
  buf.writeUInt32LE(m.exeFd >>> 0, 100);
  return buf;
}

/** Decode a `struct prctl_mm_map`. */
export function decodePrctlMmMap(buf: Buffer): PrctlMmMap {
  const w = (i: number) => buf.readBigUInt64LE(i * 8);
  return {
    startCode: w(0),
    endCode: w(1),
    startData: w(2),
    endData: w(3),
    startBrk: w(4),
    brk: w(5),
    startStack: w(6),
    argStart: w(7),
    argEnd: w(8),
    envStart: w(9),
    envEnd: w(10),
    auxv: w(11),
    auxvSize: buf.readUInt32LE(96),
    exeFd: buf.readInt32LE(100),
  };
}

/** prctl on this process with integer arguments; returns the result. */
export function prctl(
  option: number,
  a2: number | bigint = 0,
  a3: number | bigint = 0,
  a4: number | bigint = 0,
  a5: number | bigint = 0,
): number {
  const r = libc().prctl(option, a2, a3, a4, a5);
  if (r === -1)
    throw sysError('prctl', errno(), `prctl option ${option} on this process`, {
      pid: process.pid,
    });
  return r;
}
