/** The credentials subsystem's records (111 capabilities, 113 cred). */
import { array, bool, defineRecord, RecordType, struct, u32, u64 } from '@ckpt/core';

/** NGROUPS_MAX of the kernel: the most supplementary groups a task can have. */
export const NGROUPS_MAX = 65536;

const idSet = () => struct({ real: u32(), effective: u32(), saved: u32(), fs: u32() });

/**
 * A task's ids and the per-task switches that go with them, as the seed's
 * `ckpt_hdr_cred` (ids, group_info) plus what linux-cr kept elsewhere.
 */
export const credRecord = defineRecord(
  RecordType.CRED,
  'cred',
  'task credentials: uids, gids, groups, securebits, no_new_privs, dumpable',
  {
    uid: idSet(),
    gid: idSet(),
    /** Supplementary groups, sorted as the kernel keeps them. */
    groups: array(u32(), NGROUPS_MAX),
    /** SECBIT_* flags (linux/securebits.h); bit 4 is keep-caps. */
    securebits: u32('hex'),
    noNewPrivs: bool(),
    /** PR_GET_DUMPABLE: 0, 1, or 2 (set by the kernel from fs.suid_dumpable). */
    dumpable: u32(),
  },
);

/** The capability sets of a task, one bit per capability number. */
export const capabilitiesRecord = defineRecord(
  RecordType.CAPABILITIES,
  'capabilities',
  'capability sets: inheritable, permitted, effective, bounding, ambient',
  {
    inheritable: u64('hex'),
    permitted: u64('hex'),
    effective: u64('hex'),
    bounding: u64('hex'),
    ambient: u64('hex'),
  },
);

/** A decoded {@link credRecord}. */
export type SavedCred = ReturnType<typeof credRecord.decode>;
/** A decoded {@link capabilitiesRecord}. */
export type SavedCaps = ReturnType<typeof capabilitiesRecord.decode>;
