/** The namespace subsystem's records (107–110, as linux-cr's). */
import { defineRecord, RecordType, str, u32 } from '@ckpt/core';

/** __NEW_UTS_LEN + 1: the size of each field of struct new_utsname. */
export const UTS_FIELD_LEN = 65;

/** The namespaces of one task, by objref (linux-cr's `ckpt_hdr_ns`, after the task record). */
export const taskNsRecord = defineRecord(RecordType.NS, 'ns', "a task's namespaces", {
  /** Objref of its uts namespace. */
  uts: u32(),
});

/** A uts namespace: every field of uname(2) as seen inside it. */
export const utsNsRecord = defineRecord(RecordType.UTS_NS, 'uts_ns', 'uts namespace', {
  sysname: str(UTS_FIELD_LEN),
  nodename: str(UTS_FIELD_LEN),
  release: str(UTS_FIELD_LEN),
  version: str(UTS_FIELD_LEN),
  machine: str(UTS_FIELD_LEN),
  domainname: str(UTS_FIELD_LEN),
});
