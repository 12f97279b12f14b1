/**
 * SysV shared memory (the seed's "support share-memory sysv-ipc"): each
 * segment of the namespace is saved with its data, read through an fd on
 * it (ckpt attaches the segment to itself inside the namespace, opens
 * /proc/self/map_files of that attachment and detaches), only where it
 * holds data (SEEK_DATA). The segment is registered in the objhash; every
 * task's attachment (a VMA named "/SYSV<key> (deleted)", whose inode is the
 * segment's id) is a VMA record naming it by objref.
 *
 * Restart creates the segment with its id and key inside the task's new
 * ipc namespace, fills it through an fd on ckpt's own attachment (kept to
 * the end of the restart, so a namespace with kernel.shm_rmid_forced does
 * not destroy it before the tasks attach it), sets its owner and mode, locks
 * it if it was, and removes it at the end if it had been removed while
 * attached (SHM_DEST). Each attachment is shmat(SHM_REMAP) from inside its
 * task at the saved address.
 *
 * Not kept: the creator ids (the creator is ckpt), attach/detach times and
 * pids; a checkpoint attaches each segment once, so its shm_atime and
 * shm_lpid name ckpt.
 */
import { closeSync, fstatSync, ftruncateSync, openSync } from 'node:fs';
import {
  type CheckpointCtx,
  type CheckpointTask,
  CkptError,
  type IpcPerm,
  listSysvIpc,
  mapFilesPath,
  type ObjectOps,
  ownNamespace,
  PAGE_SIZE,
  type RestartCtx,
  removeIpc,
  SHM_DEST,
  SHM_LOCKED,
  type SysvIpcEntry,
  setIpcPerm,
  shmAttach,
  shmCreate,
  shmDetach,
  shmLock,
  type VmaHandler,
  type VmaInfo,
} from '@ckpt/core';
import {
  countPages,
  dataPages,
  describeVma,
  dumpPages,
  fileMemory,
  restorePages,
  type VmaRecord,
} from '@ckpt/mm';
import { type IpcShmRecord, ipcShmRecord } from './records.js';

/** Name of a segment's objhash type. */
export const SHM_OBJECT = 'sysv_shm';

const PAGE = BigInt(PAGE_SIZE);
const pageAlign = (n: bigint) => ((n + PAGE - 1n) / PAGE) * PAGE;
const hex = (n: bigint) => n.toString(16);

/** A segment as the checkpoint found it, with an fd on its data. */
export interface ShmToSave {
  perm: IpcPerm;
  size: bigint;
  fd: number;
}

/** A restored segment, as attachments find it by objref. */
export interface RestoredShm {
  id: number;
  size: bigint;
}

/** The objhash key of a segment: its namespace and id. */
export const shmKey = (nsInode: number, id: number): string => `${nsInode}:${id}`;

/**
 * Inside the namespace: attach segment `e` to ckpt, open its data, detach.
 * The fd keeps the segment's file.
 */
export function openShm(e: SysvIpcEntry): ShmToSave {
  const size = BigInt(e.columns.size ?? '0');
  const addr = shmAttach(e.id, true);
  try {
    const path = mapFilesPath('self', { start: addr, end: addr + pageAlign(size) });
    return { perm: e, size, fd: openSync(path, 'r') };
  } finally {
    shmDetach(addr);
  }
}

/** Write segment `shm` (and close its fd); `objref` names it for the attachments. */
export function saveShm(ctx: CheckpointCtx, shm: ShmToSave, objref: number): void {
  const what = `saving SysV shared memory ${shm.perm.id} (key ${shm.perm.key})`;
  try {
    const runs = dataPages(shm.fd, shm.size, what);
    ctx.write(ipcShmRecord, { ...shm.perm, size: shm.size, objref, nrPages: countPages(runs) });
    dumpPages(ctx, fileMemory(shm.fd, what, 0), runs);
  } finally {
    closeSync(shm.fd);
  }
}

/**
 * Read a segment's record and bring the segment back inside the namespace
 * (`inNs`): created with its id and key, or with `reuse`, the segment of
 * that id if it still exists (a subtree's segment of the host, which
 * outlives the processes); its data written through an fd of ckpt's
 * attachment, whose detach the caller runs at the end. Registers nothing.
 * @throws CkptError EBUSY when the id is another segment's (reuse)
 */
export function restoreShmRecord(
  ctx: RestartCtx,
  inNs: <T>(fn: () => T) => T,
  reuse = false,
): { rec: IpcShmRecord; detach: () => void } {
  const rec = ctx.read(ipcShmRecord);
  const what = `restoring SysV shared memory ${rec.id} (key ${rec.key})`;
  let addr = 0n;
  const fd = inNs(() => {
    const found = reuse ? listSysvIpc('shm').find((e) => e.id === rec.id) : undefined;
    if (found && (found.key !== rec.key || BigInt(found.columns.size ?? -1) !== rec.size)) {
      throw new CkptError(
        'EBUSY',
        `${what}: id ${rec.id} is now another segment's (key ${found.key}, ${found.columns.size} bytes); remove it (ipcrm -m ${rec.id}) or restart elsewhere`,
        {},
      );
    }
    if (!found) shmCreate(rec, rec.size);
    setIpcPerm('shm', rec);
    if ((rec.mode & SHM_LOCKED) !== 0) shmLock(rec.id);
    addr = shmAttach(rec.id, false);
    return openSync(mapFilesPath('self', { start: addr, end: addr + pageAlign(rec.size) }), 'r+');
  });
  try {
    restorePages(ctx, fileMemory(fd, what, 0), rec.nrPages, {
      start: 0n,
      end: pageAlign(rec.size),
    });
    // Whole pages were written: the file behind the segment grew past its size.
    if (BigInt(fstatSync(fd).size) !== rec.size) ftruncateSync(fd, Number(rec.size));
  } finally {
    closeSync(fd);
  }
  return { rec, detach: () => shmDetach(addr) };
}

/** {@link restoreShmRecord} for a segment of a saved namespace, registered by its objref. */
export function restoreShm(
  ctx: RestartCtx,
  inNs: <T>(fn: () => T) => T,
): { rec: IpcShmRecord; detach: () => void } {
  const r = restoreShmRecord(ctx, inNs);
  ctx.objhash.insert<RestoredShm>(r.rec.objref, SHM_OBJECT, { id: r.rec.id, size: r.rec.size });
  return r;
}

/** Was the segment removed (IPC_RMID) while still attached? */
export const isRemoved = (rec: { mode: number }): boolean => (rec.mode & SHM_DEST) !== 0;

/** The segments saved by this checkpoint, by {@link shmKey}: objref and size. */
const savedShms = new WeakMap<CheckpointCtx, Map<string, { objref: number; size: bigint }>>();

/** Remember segment `key` as saved under `objref`. */
export function noteSavedShm(ctx: CheckpointCtx, key: string, objref: number, size: bigint): void {
  let m = savedShms.get(ctx);
  if (!m) {
    m = new Map();
    savedShms.set(ctx, m);
  }
  m.set(key, { objref, size });
}

const PROT_READ = 1;
const PROT_WRITE = 2;
const PROT_EXEC = 4;
const SHM_RDONLY = 0o10000;
const SHM_REMAP = 0o40000;
const SHM_EXEC = 0o100000;

/** The VMA handler id of SysV attachments (@ckpt/mm's kinds are 1–9). */
export const SYSV_SHM_VMA = 20;

const range = (v: { start: bigint; end: bigint }) => `0x${hex(v.start)}-0x${hex(v.end)}`;

/**
 * Attachments of SysV segments. A region must be a whole attachment (from
 * offset 0, the segment's length): shmat maps segments whole. A region
 * without PROT_WRITE is attached SHM_RDONLY, so one attached writable and
 * then made read-only with mprotect cannot be made writable again.
 */
export const sysvShmVma: VmaHandler & {
  checkpointObject(ctx: CheckpointCtx, task: CheckpointTask, vma: VmaInfo): number;
} = {
  kind: 'sysv-shm',
  id: SYSV_SHM_VMA,
  match: (v) => v.kind === 'file' && v.shared && v.pathname.startsWith('/SYSV'),
  describe: (_task, v) => describeVma(v, SYSV_SHM_VMA, v.pathname),
  pages: () => [],
  checkpointObject(ctx, task, v) {
    const nsInode = ctx.namespaces.inode(task.pid, 'ipc');
    const key = shmKey(nsInode, v.inode);
    const where = `pid ${task.pid}: SysV shared memory ${v.inode} attached at ${range(v)}`;
    const saved = savedShms.get(ctx)?.get(key);
    const host = saved ? undefined : hostSegment(nsInode, v.inode);
    if (!saved && !host) {
      throw new CkptError(
        'ENOTSUP',
        `${where} belongs to an ipc namespace whose objects are not saved: only a container's own, and segments of ckpt's own (a subtree's) are`,
        { pid: task.pid, address: v.start },
      );
    }
    const size = saved?.size ?? BigInt(host!.columns.size ?? 0);
    if (v.offset !== 0n || v.end - v.start !== pageAlign(size)) {
      throw new CkptError(
        'ENOTSUP',
        `${where} maps only part of the segment (${size} bytes); ckpt restores whole attachments only`,
        { pid: task.pid, address: v.start },
      );
    }
    if (saved) return saved.objref;
    // A segment of the host's namespace: saved on its own, at its first attachment.
    return ctx.checkpointObj(SHM_OBJECT, key, { pid: task.pid, vma: v, entry: host! });
  },
  restore(ctx, task, vma) {
    const { objref } = vma as VmaRecord;
    const shm = ctx.fetchObj<RestoredShm>(objref, SHM_OBJECT);
    const what = `pid ${task.savedPid}: attaching SysV shared memory ${shm.id} at ${range(vma)}`;
    const flags =
      SHM_REMAP |
      ((vma.prot & PROT_WRITE) === 0 ? SHM_RDONLY : 0) |
      ((vma.prot & PROT_EXEC) !== 0 ? SHM_EXEC : 0);
    const at = task.sys.check('shmat', [shm.id, vma.start, flags], what);
    if (at !== vma.start) {
      throw new CkptError('EUNEXPECTED', `${what}: attached at 0x${hex(at)} instead`, {
        pid: task.savedPid,
        address: vma.start,
      });
    }
    const given =
      PROT_READ | ((flags & SHM_RDONLY) === 0 ? PROT_WRITE : 0) | (vma.prot & PROT_EXEC);
    if (given !== vma.prot) {
      task.sys.check('mprotect', [vma.start, vma.end - vma.start, vma.prot], what);
    }
  },
};

/** Segment `id` of ckpt's own (the host's) ipc namespace, if `nsInode` is that namespace. */
function hostSegment(nsInode: number, id: number): SysvIpcEntry | undefined {
  if (nsInode !== ownNamespace('ipc')) return undefined;
  return listSysvIpc('shm').find((e) => e.id === id);
}

/** A segment of the host's ipc namespace attached by a subtree: where, and what /proc/sysvipc says. */
interface HostShmToSave {
  pid: number;
  vma: VmaInfo;
  entry: SysvIpcEntry;
}

/**
 * ObjectOps of SysV segments. A container's are written with their
 * namespace (see sysvipc.ts) and only named by objref; a subtree's,
 * segments of the host's ipc namespace, are written here, at their first
 * attachment: read through that attachment's map_files, and at restart
 * created again with their id and key (or, where the segment still exists
 * on this host, the same one reused), their data written back. Removed
 * while attached, one is removed again at the end of the restart.
 */
export const sysvShmObject: ObjectOps<HostShmToSave | RestoredShm> = {
  name: SHM_OBJECT,
  id: 12,
  checkpoint(ctx, obj, objref) {
    const { pid, vma, entry } = obj as HostShmToSave;
    saveShm(
      ctx,
      {
        perm: entry,
        size: BigInt(entry.columns.size ?? 0),
        fd: openSync(mapFilesPath(pid, vma), 'r'),
      },
      objref,
    );
  },
  restore(ctx) {
    const { rec, detach } = restoreShmRecord(ctx, (fn) => fn(), true);
    ctx.deferqueue.add(
      rec,
      (r) => {
        detach();
        if (isRemoved(r)) removeIpc('shm', r.id);
      },
      () => detach(),
    );
    return { id: rec.id, size: rec.size };
  },
  describe: (obj) =>
    'vma' in obj ? `SysV shared memory ${obj.entry.id}` : `SysV shared memory ${obj.id}`,
};
