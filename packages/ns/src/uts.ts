/**
 * The uts namespace (the seed's "support for UTS namespace"): every field
 * of uname(2), read inside the task by an injected uname, saved once per
 * namespace through the objhash (keyed by the namespace's nsfs inode) and
 * referenced by objref from each task's `ns` record.
 *
 * Restart (see ns-object.ts for where each namespace comes from): in a
 * new namespace (a container's, or one the tree made) the hostname and
 * domainname are set with injected sethostname/setdomainname. The host's
 * names are never changed.
 */
import { hostname } from 'node:os';
import {
  type CheckpointCtx,
  type CheckpointTask,
  cString,
  type ObjectOps,
  ownNamespace,
  type RecordValue,
  type RestartCtx,
  type RestartTask,
  stage,
} from '@ckpt/core';
import {
  checkpointNamespace,
  namespaceObject,
  type RestoredNs,
  restoreNamespace,
} from './ns-object.js';
import { UTS_FIELD_LEN, utsNsRecord } from './records.js';

/** The saved fields of a uts namespace. */
export type UtsNs = RecordValue<typeof utsNsRecord>;

/** A restored uts namespace (see ns-object.ts). */
export type RestoredUts = RestoredNs<UtsNs>;

const FIELDS = ['sysname', 'nodename', 'release', 'version', 'machine', 'domainname'] as const;

/** Parse a struct new_utsname (6 × 65 bytes, NUL-terminated strings). */
export function parseUtsname(buf: Buffer): UtsNs {
  const out = { host: false } as UtsNs;
  FIELDS.forEach((f, i) => {
    const field = buf.subarray(i * UTS_FIELD_LEN, (i + 1) * UTS_FIELD_LEN);
    const end = field.indexOf(0);
    out[f] = field.subarray(0, end < 0 ? UTS_FIELD_LEN : end).toString('utf8');
  });
  return out;
}

/** uname(2) inside the task. */
function readUts(task: CheckpointTask): UtsNs {
  const size = FIELDS.length * UTS_FIELD_LEN;
  const addr = task.sys.scratch(size);
  task.sys.check('uname', [addr], 'reading the uts names');
  return parseUtsname(task.mem.read(addr, size));
}

/** ObjectOps of uts namespaces (linux-cr's CKPT_OBJ_UTS_NS, hence id 9). */
export const utsNsObject: ObjectOps<UtsNs | RestoredUts> = namespaceObject({
  name: 'uts_ns',
  id: 9,
  record: utsNsRecord,
  describe: (uts) => `uts namespace (hostname ${uts.nodename})`,
});

/**
 * Save the uts namespace of `task` (once per namespace) and return its objref.
 * `inode` is its nsfs inode, the object's identity.
 */
export function checkpointUts(ctx: CheckpointCtx, task: CheckpointTask, inode: number): number {
  return checkpointNamespace(ctx, 'uts_ns', inode, () => ({
    ...readUts(task),
    host: inode === ownNamespace('uts'),
  }));
}

/** Set a name in the task's uts namespace by an injected syscall. */
function setName(
  task: RestartTask,
  call: 'sethostname' | 'setdomainname',
  name: string,
  what: string,
): void {
  const buf = cString(name);
  const [addr] = stage(task, [buf]);
  task.sys.check(call, [addr!, buf.length - 1], `setting the ${what} to '${name}'`);
}

/** Restore the uts namespace `objref` for `task` (see the module comment). */
export function restoreUts(ctx: RestartCtx, task: RestartTask, objref: number): void {
  restoreNamespace<UtsNs>(ctx, task, objref, 'uts_ns', 'uts', {
    inHost(uts) {
      // Never rename the host.
      const host = hostname();
      if (uts.nodename !== host) {
        ctx.log.warn(
          `pid ${task.savedPid} had hostname '${uts.nodename}'; it is restored in the host's uts namespace ('${host}')`,
        );
      }
    },
    apply(uts) {
      setName(task, 'sethostname', uts.nodename, 'hostname');
      setName(task, 'setdomainname', uts.domainname, 'domainname');
    },
  });
}
