/**
 * Capabilities as numbers and bit masks (linux/capability.h), the prctl
 * options for capabilities and securebits that core's `PR` lacks, and the
 * `capset(2)` argument structs.
 */
import { readFileSync } from 'node:fs';
import { CkptError } from '@ckpt/core';

/** prctl options of capabilities(7) and securebits. */
export const PR_CAPS = {
  SET_KEEPCAPS: 8,
  CAPBSET_DROP: 24,
  GET_SECUREBITS: 27,
  SET_SECUREBITS: 28,
  CAP_AMBIENT: 47,
} as const;

/** PR_CAP_AMBIENT sub-options. */
export const PR_CAP_AMBIENT = { RAISE: 2, CLEAR_ALL: 4 } as const;

/** Securebits that restore handles specially (linux/securebits.h). */
export const SECBIT = {
  KEEP_CAPS: 1 << 4,
  NO_CAP_AMBIENT_RAISE: 1 << 6,
} as const;

/** Capabilities whose absence explains a refusal. */
export const CAP = { SETGID: 6, SETUID: 7, SETPCAP: 8 } as const;

const NAMES = [
  'CHOWN',
  'DAC_OVERRIDE',
  'DAC_READ_SEARCH',
  'FOWNER',
  'FSETID',
  'KILL',
  'SETGID',
  'SETUID',
  'SETPCAP',
  'LINUX_IMMUTABLE',
  'NET_BIND_SERVICE',
  'NET_BROADCAST',
  'NET_ADMIN',
  'NET_RAW',
  'IPC_LOCK',
  'IPC_OWNER',
  'SYS_MODULE',
  'SYS_RAWIO',
  'SYS_CHROOT',
  'SYS_PTRACE',
  'SYS_PACCT',
  'SYS_ADMIN',
  'SYS_BOOT',
  'SYS_NICE',
  'SYS_RESOURCE',
  'SYS_TIME',
  'SYS_TTY_CONFIG',
  'MKNOD',
  'LEASE',
  'AUDIT_WRITE',
  'AUDIT_CONTROL',
  'SETFCAP',
  'MAC_OVERRIDE',
  'MAC_ADMIN',
  'SYSLOG',
  'WAKE_ALARM',
  'BLOCK_SUSPEND',
  'AUDIT_READ',
  'PERFMON',
  'BPF',
  'CHECKPOINT_RESTORE',
];

/** `CAP_SETUID` for 7; capabilities newer than this table by number. */
export function capName(cap: number): string {
  const name = NAMES[cap];
  return name ? `CAP_${name}` : `capability ${cap}`;
}

/** True when capability `cap` is in `mask`. */
export function hasCap(mask: bigint, cap: number): boolean {
  return ((mask >> BigInt(cap)) & 1n) === 1n;
}

/** The capability numbers set in `mask`, lowest first. */
export function capsIn(mask: bigint): number[] {
  const out: number[] = [];
  for (let cap = 0; mask >> BigInt(cap) !== 0n; cap++) if (hasCap(mask, cap)) out.push(cap);
  return out;
}

/** "CAP_CHOWN, CAP_KILL" for a mask, for messages. */
export function describeCaps(mask: bigint): string {
  return capsIn(mask).map(capName).join(', ');
}

let known: bigint | undefined;

/** Mask of every capability this kernel knows (read once: the kernel's constant). */
export function knownCaps(): bigint {
  known ??= readKnownCaps();
  return known;
}

function readKnownCaps(): bigint {
  const path = '/proc/sys/kernel/cap_last_cap';
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new CkptError('ENOSYS', `cannot read ${path}: ${(e as Error).message}`, { path });
  }
  const last = Number(text.trim());
  if (!Number.isInteger(last) || last < 0 || last > 63) {
    throw new CkptError('EINVAL', `${path} says '${text.trim()}', not a capability number`, {
      path,
    });
  }
  return (1n << BigInt(last + 1)) - 1n;
}

/** _LINUX_CAPABILITY_VERSION_3: two data structs, for capabilities 0-31 and 32-63. */
const CAPABILITY_VERSION_3 = 0x20080522;

/** The three sets `capset(2)` takes. */
export interface CapSets {
  effective: bigint;
  permitted: bigint;
  inheritable: bigint;
}

/**
 * The arguments of capset(2): `struct __user_cap_header_struct` {version,
 * pid = 0 (the calling thread)} and two `struct __user_cap_data_struct`
 * {effective, permitted, inheritable}, the low 32 capabilities then the high.
 */
export function capsetArgs(sets: CapSets): [header: Buffer, data: Buffer] {
  const header = Buffer.alloc(8);
  header.writeUInt32LE(CAPABILITY_VERSION_3, 0);
  const data = Buffer.alloc(24);
  for (const [half, shift] of [
    [0, 0n],
    [1, 32n],
  ] as const) {
    const word = (m: bigint) => Number((m >> shift) & 0xffffffffn);
    data.writeUInt32LE(word(sets.effective), half * 12);
    data.writeUInt32LE(word(sets.permitted), half * 12 + 4);
    data.writeUInt32LE(word(sets.inheritable), half * 12 + 8);
  }
  return [header, data];
}
