/**
 * The `mounts` phase: the mounts a container made in its own mount
 * namespace. Restart gives a container a new mount namespace, a copy of
 * restart's own with a new /proc (see core's container.ts); this phase,
 * in the container's root task, mounts again what the container had added
 * to it, in the order it was mounted:
 *
 * - a tmpfs (or ramfs) with every file on it (directories, regular files
 *   with their data, symbolic and hard links, FIFOs, device nodes; owner,
 *   permissions, times);
 * - a bind mount, of a host path or of a part of an earlier mount;
 * - a new instance of proc, sysfs or mqueue (nothing of theirs to save).
 *
 * Anything else the container mounted (devpts, cgroup, a disk) fails the
 * checkpoint, naming the mount: restart would make the container without it.
 *
 * A mount counts as the container's own when restart's copy would not have
 * it: no mount of ckpt's namespace has its place, filesystem (device) and
 * root. The container's /proc is not saved: restart mounts a new one.
 * Per-mount flags (read-only, nosuid, nodev, noexec, atime) are kept;
 * propagation is not (restart makes every mount of the container private).
 *
 * Order 180: after the namespaces (a sysfs shows the network namespace of
 * whoever mounts it) and before the memory (a program may run from, or map,
 * a file on a tmpfs) and the files phases of every task (their open files).
 */
import {
  type BigIntStats,
  chmodSync,
  closeSync,
  constants,
  existsSync,
  ftruncateSync,
  lchownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
} from 'node:fs';
import { dirname } from 'node:path';
import {
  type CheckpointCtx,
  CheckpointFlags,
  type CheckpointTask,
  CkptError,
  cString,
  dataChunks,
  type Mount,
  makeNode,
  parseMounts,
  type RecordValue,
  type RestartCtx,
  type RestartTask,
  readAt,
  readDirQuietly,
  setFileTimes,
  stage,
  type TaskPhase,
  writeAt,
} from '@ckpt/core';
import {
  MountKind,
  mountFileDataRecord,
  mountFileRecord,
  mountRecord,
  mountsRecord,
} from './records.js';

const MS_RDONLY = 0x1;
const MS_NOSUID = 0x2;
const MS_NODEV = 0x4;
const MS_NOEXEC = 0x8;
const MS_REMOUNT = 0x20;
const MS_NOSYMFOLLOW = 0x100;
const MS_NOATIME = 0x400;
const MS_NODIRATIME = 0x800;
const MS_BIND = 0x1000;
const MS_RELATIME = 0x200000;
const MS_STRICTATIME = 0x1000000;

/** Per-mount options of mountinfo and their mount(2) flags. */
const MOUNT_FLAGS: Readonly<Record<string, number>> = {
  ro: MS_RDONLY,
  nosuid: MS_NOSUID,
  nodev: MS_NODEV,
  noexec: MS_NOEXEC,
  nosymfollow: MS_NOSYMFOLLOW,
  noatime: MS_NOATIME,
  nodiratime: MS_NODIRATIME,
  relatime: MS_RELATIME,
  strictatime: MS_STRICTATIME,
};

/** Filesystems whose files are saved with the mount (they exist nowhere else). */
const FILLED = new Set(['tmpfs', 'ramfs']);
/** Filesystems mounted anew, empty of anything to save. */
const FRESH = new Set(['proc', 'sysfs', 'mqueue']);

/** The unit of progress (see core's Progress): pages. */
const PAGE = 4096;

/** Data of a file is saved in pieces of this size. */
const CHUNK = 4 << 20;

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFSOCK = 0o140000;

/** mount(2) flags of per-mount options such as "rw,nosuid,relatime". */
export function mountFlags(options: string): number {
  let flags = 0;
  for (const o of options.split(',')) flags |= MOUNT_FLAGS[o] ?? 0;
  return flags;
}

/** A mount to save: its mountinfo line and how restart makes it. */
export interface PlannedMount {
  mount: Mount;
  kind: (typeof MountKind)[keyof typeof MountKind];
  /** What restart mounts: the bound path for a bind mount. */
  source: string;
}

/** `path` lies under `dir` ("/" holds everything). */
function under(path: string, dir: string): boolean {
  return dir === '/' || path === dir || path.startsWith(`${dir}/`);
}

/** `path` (under `dir`) moved from `dir` to `to`. */
function rebase(path: string, dir: string, to: string): string {
  const rest = dir === '/' ? path : path.slice(dir.length);
  if (rest === '' || rest === '/') return to;
  return to === '/' ? rest : `${to}${rest.startsWith('/') ? '' : '/'}${rest}`;
}

/**
 * The mounts of `inside` (a container's mountinfo) that `host` (ckpt's)
 * lacks, and how restart makes each again.
 * @throws CkptError ENOTSUP naming the first mount restart cannot make
 */
export function planMounts(
  root: number,
  inside: readonly Mount[],
  host: readonly Mount[],
): PlannedMount[] {
  const key = (m: Mount) => `${m.point}\0${m.root}\0${m.dev}`;
  const hostKeys = new Set(host.map(key));
  const plan: PlannedMount[] = [];
  for (const m of inside) {
    if (hostKeys.has(key(m))) continue;
    // Restart mounts a new one there for the container's pid namespace.
    if (m.fstype === 'proc' && m.point === '/proc') continue;
    // Part of a filesystem mounted before (by the container or the host):
    // bound again from there.
    const from = plan.find(
      (p) => p.mount.dev === m.dev && p.kind !== MountKind.NEW && under(m.root, p.mount.root),
    );
    if (from) {
      plan.push({
        mount: m,
        kind: MountKind.BIND,
        source: rebase(m.root, from.mount.root, from.mount.point),
      });
      continue;
    }
    const onHost = host.find((h) => h.dev === m.dev && under(m.root, h.root));
    if (onHost) {
      plan.push({
        mount: m,
        kind: MountKind.BIND,
        source: rebase(m.root, onHost.root, onHost.point),
      });
      continue;
    }
    if (FILLED.has(m.fstype) && m.root === '/') {
      plan.push({ mount: m, kind: MountKind.TMPFS, source: m.source });
      continue;
    }
    if (FRESH.has(m.fstype)) {
      plan.push({ mount: m, kind: MountKind.NEW, source: m.source });
      continue;
    }
    throw new CkptError(
      'ENOTSUP',
      `the container of pid ${root} has a mount ckpt cannot save: ${m.fstype} ${m.source} at ${m.point}${m.root === '/' ? '' : ` (${m.root} of it)`}; ckpt saves a container's tmpfs, ramfs, proc, sysfs and mqueue mounts and bind mounts of what is mounted elsewhere, and restart would make the container without this one: unmount it, or keep its data elsewhere`,
      { pid: root, path: m.point },
    );
  }
  return plan;
}

/** The filesystem options of `m` as mount(2)'s data, and whether they make it read-only. */
function dataOf(m: Mount): { data: string; readOnly: boolean } {
  const opts = m.superOptions.split(',').filter((o) => o !== '');
  return {
    data: opts.filter((o) => o !== 'rw' && o !== 'ro').join(','),
    readOnly: opts.includes('ro'),
  };
}

/** One file found on a tmpfs, and where it is, as ckpt reads it. */
interface FoundFile {
  rec: RecordValue<typeof mountFileRecord>;
  /** Its path through /proc/PID/root, for a regular file whose data is saved. */
  dataFrom?: string;
  /** Bytes the file has allocated (its data, holes not counted). */
  allocated: number;
}

/**
 * Every file of the tmpfs at `base` (a path through /proc/PID/root), its
 * root first, parents before children. A mount on one of its directories
 * (or files) is not entered: the place is kept, as an empty directory or
 * file, for restart to mount on again.
 */
function findFiles(base: string): FoundFile[] {
  const rootStat = lstatSync(base, { bigint: true });
  const out: FoundFile[] = [];
  const links = new Map<bigint, number>();
  const visit = (rel: string, st: BigIntStats): void => {
    const full = rel === '' ? base : `${base}/${rel}`;
    const mode = Number(st.mode);
    const type = mode & S_IFMT;
    if (type === S_IFSOCK) return; // a listener binds its own again
    const rec: RecordValue<typeof mountFileRecord> = {
      path: rel,
      mode,
      uid: Number(st.uid),
      gid: Number(st.gid),
      rdev: st.rdev,
      atimeNs: st.atimeNs,
      mtimeNs: st.mtimeNs,
      size: 0n,
      chunks: 0,
      target: '',
      linkTo: 0,
    };
    if (st.dev !== rootStat.dev) {
      // Another mount's root: only its place is saved.
      rec.mode = type === S_IFDIR ? S_IFDIR | 0o755 : S_IFREG | 0o644;
      out.push({ rec, allocated: 0 });
      return;
    }
    if (type !== S_IFDIR && st.nlink > 1n) {
      const first = links.get(st.ino);
      if (first !== undefined) {
        rec.linkTo = first;
        out.push({ rec, allocated: 0 });
        return;
      }
      links.set(st.ino, out.length + 1);
    }
    if (type === S_IFLNK) {
      rec.target = readlinkSync(full);
      // Reading a link updates its access time, with no flag to say not
      // to: put it back (a container left running sees no change).
      setFileTimes(full, st.atimeNs, st.mtimeNs);
    }
    if (type === S_IFREG) {
      rec.size = st.size;
      out.push({ rec, dataFrom: full, allocated: Number(st.blocks) * 512 });
    } else out.push({ rec, allocated: 0 });
    if (type === S_IFDIR) {
      for (const name of readDirQuietly(full).sort()) {
        const child = rel === '' ? name : `${rel}/${name}`;
        visit(child, lstatSync(`${base}/${child}`, { bigint: true }));
      }
    }
  };
  visit('', rootStat);
  return out;
}

/**
 * Write the records of one tmpfs file found at checkpoint, with its data;
 * `saved(bytes)` after each piece.
 */
function writeFile(
  ctx: CheckpointCtx,
  found: FoundFile,
  what: string,
  saved: (bytes: number) => void,
): void {
  if (found.dataFrom === undefined) {
    ctx.write(mountFileRecord, found.rec);
    return;
  }
  // O_NOATIME: reading it must not change the time a left-running
  // container sees (nor the one saved).
  const fd = openSync(found.dataFrom, constants.O_RDONLY | constants.O_NOATIME);
  try {
    const chunks = dataChunks(fd, found.rec.size, what, CHUNK);
    ctx.write(mountFileRecord, { ...found.rec, chunks: chunks.length });
    for (const c of chunks) {
      ctx.write(mountFileDataRecord, { offset: c.offset, data: readAt(fd, c.offset, c.length) });
      saved(c.length);
    }
  } finally {
    closeSync(fd);
  }
}

function checkpointMounts(ctx: CheckpointCtx, task: CheckpointTask): void {
  if (!ctx.has(CheckpointFlags.CONTAINER) || ctx.pids[0] !== task.pid) return;
  const root = task.pid;
  const host = parseMounts(readFileSync('/proc/self/mountinfo', 'utf8'));
  const inside = parseMounts(readFileSync(`/proc/${root}/mountinfo`, 'utf8'));
  const plan = planMounts(root, inside, host);
  const rootDir = readlinkSync(`/proc/${root}/root`);
  if (plan.length > 0 && rootDir !== '/') {
    // Its mountinfo shows only what lies under its root, relative to it.
    throw new CkptError(
      'ENOTSUP',
      `the container of pid ${root} has mounts of its own, and its root task has changed its root directory (to ${rootDir}): such mounts are not saved yet`,
      { pid: root },
    );
  }
  ctx.write(mountsRecord, { count: plan.length });
  for (const p of plan) {
    const m = p.mount;
    const at = `/proc/${root}/root${m.point}`;
    const files = p.kind === MountKind.TMPFS ? findFiles(at) : [];
    const allocated = files.reduce((n, f) => n + f.allocated, 0);
    const { data, readOnly } =
      p.kind === MountKind.BIND ? { data: '', readOnly: false } : dataOf(m);
    ctx.write(mountRecord, {
      kind: p.kind,
      point: m.point,
      fstype: m.fstype,
      source: p.source,
      data,
      flags: mountFlags(m.options),
      readOnly,
      dir: lstatSync(at).isDirectory(),
      files: files.length,
      dataBytes: BigInt(allocated),
    });
    const progress = filesProgress(ctx, `files of ${m.point}`, allocated);
    try {
      for (const f of files) {
        writeFile(
          ctx,
          f,
          `saving ${m.point}/${f.rec.path} of the container of pid ${root}`,
          progress,
        );
      }
    } finally {
      ctx.progress.end();
    }
  }
}

/** Start showing progress over `bytes` of file data (in the pages progress counts); returns what counts bytes done. */
function filesProgress(
  ctx: CheckpointCtx | RestartCtx,
  label: string,
  bytes: number,
): (n: number) => void {
  ctx.progress.start(label, Math.ceil(bytes / PAGE));
  let done = 0;
  return (n) => {
    done += n;
    ctx.progress.update(Math.ceil(done / PAGE));
  };
}

/** mount(2) injected in `task` (in the container's mount namespace). */
function mountInTask(
  task: RestartTask,
  call: { source?: string; point: string; fstype?: string; flags: number; data?: string },
  what: string,
): void {
  const parts = [cString(call.point)];
  if (call.source !== undefined) parts.push(cString(call.source));
  if (call.fstype !== undefined) parts.push(cString(call.fstype));
  if (call.data) parts.push(cString(call.data));
  const addrs = stage(task, parts);
  let i = 1;
  const source = call.source !== undefined ? addrs[i++]! : 0n;
  const fstype = call.fstype !== undefined ? addrs[i++]! : 0n;
  const data = call.data ? addrs[i++]! : 0n;
  task.sys.check('mount', [source, addrs[0]!, fstype, call.flags, data], what);
}

/** Make the mount point of `rec` if the container's view lacks it (a warning says so). */
function ensurePoint(ctx: RestartCtx, at: string, rec: RecordValue<typeof mountRecord>): void {
  if (existsSync(at)) return;
  if (rec.dir) mkdirSync(at, { recursive: true });
  else {
    mkdirSync(dirname(at), { recursive: true });
    closeSync(openSync(at, 'a'));
  }
  ctx.log.warn(`made the mount point ${rec.point} of the container, which it lacked here`);
}

/** Recreate the saved files of a tmpfs mounted at `at` (a path through /proc/PID/root). */
function fillFiles(
  ctx: RestartCtx,
  at: string,
  rec: RecordValue<typeof mountRecord>,
  restored: (bytes: number) => void,
): void {
  const files: RecordValue<typeof mountFileRecord>[] = [];
  const pathOf = (f: RecordValue<typeof mountFileRecord>) =>
    f.path === '' ? at : `${at}/${f.path}`;
  for (let i = 0; i < rec.files; i++) {
    const f = ctx.read(mountFileRecord);
    files.push(f);
    const path = pathOf(f);
    const what = `restoring ${rec.point}/${f.path}`;
    const type = f.mode & S_IFMT;
    if (f.linkTo > 0) {
      const first = files[f.linkTo - 1];
      if (!first)
        throw new CkptError('EBADREC', `${what}: a link to file ${f.linkTo}, not seen before`);
      linkSync(pathOf(first), path);
    } else if (type === S_IFDIR) {
      if (f.path !== '') mkdirSync(path, { mode: 0o700 });
    } else if (type === S_IFLNK) {
      symlinkSync(f.target, path);
    } else if (type === S_IFREG) {
      fillRegular(ctx, path, f, what, restored);
    } else {
      makeNode(path, type | 0o600, f.rdev);
    }
  }
  // Owners, then permissions (a chown clears set-id bits), then times,
  // children first (making an entry changes its directory's times).
  for (const f of files) {
    if (f.linkTo > 0) continue;
    lchownSync(pathOf(f), f.uid, f.gid);
    if ((f.mode & S_IFMT) !== S_IFLNK) chmodSync(pathOf(f), f.mode & 0o7777);
  }
  for (const f of [...files].reverse()) {
    if (f.linkTo === 0) setFileTimes(pathOf(f), f.atimeNs, f.mtimeNs);
  }
}

function fillRegular(
  ctx: RestartCtx,
  path: string,
  f: RecordValue<typeof mountFileRecord>,
  what: string,
  restored: (bytes: number) => void,
): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    for (let i = 0; i < f.chunks; i++) {
      const chunk = ctx.read(mountFileDataRecord);
      if (chunk.offset + BigInt(chunk.data.length) > f.size) {
        throw new CkptError('EBADREC', `${what}: data past its size ${f.size}`, {
          recordType: mountFileDataRecord.type,
        });
      }
      writeAt(fd, chunk.data, chunk.offset);
      restored(chunk.data.length);
    }
    ftruncateSync(fd, Number(f.size));
  } finally {
    closeSync(fd);
  }
}

function restoreMounts(ctx: RestartCtx, task: RestartTask): void {
  if (!ctx.has(CheckpointFlags.CONTAINER) || ctx.pids[0] !== task.pid) return;
  const { count } = ctx.read(mountsRecord);
  for (let i = 0; i < count; i++) {
    const rec = ctx.read(mountRecord);
    const at = `/proc/${task.pid}/root${rec.point}`;
    const what = `mounting ${rec.fstype} ${rec.source} at ${rec.point} in the container of pid ${task.savedPid}`;
    ensurePoint(ctx, at, rec);
    if (rec.kind === MountKind.BIND) {
      mountInTask(task, { source: rec.source, point: rec.point, flags: MS_BIND }, what);
      if ((rec.flags & ~MS_RELATIME) !== 0) {
        mountInTask(
          task,
          { point: rec.point, flags: MS_REMOUNT | MS_BIND | rec.flags },
          `${what}: setting its flags`,
        );
      }
      continue;
    }
    const fill = rec.kind === MountKind.TMPFS;
    // A tmpfs is filled first, then made read-only.
    const flags = fill ? rec.flags & ~MS_RDONLY : rec.flags | (rec.readOnly ? MS_RDONLY : 0);
    mountInTask(
      task,
      { source: rec.source, point: rec.point, fstype: rec.fstype, flags, data: rec.data },
      what,
    );
    if (!fill) continue;
    const progress = filesProgress(ctx, `files of ${rec.point}`, Number(rec.dataBytes));
    try {
      fillFiles(ctx, at, rec, progress);
    } finally {
      ctx.progress.end();
    }
    ctx.recreatedMounts.push(rec.point);
    if (rec.readOnly) {
      mountInTask(
        task,
        { point: rec.point, flags: MS_REMOUNT | rec.flags | MS_RDONLY, data: rec.data },
        `${what}: making it read-only`,
      );
    } else if ((rec.flags & MS_RDONLY) !== 0) {
      mountInTask(
        task,
        { point: rec.point, flags: MS_REMOUNT | MS_BIND | rec.flags },
        `${what}: making it read-only`,
      );
    }
  }
}

/** Saves and restores the mounts a container made (its root task only). */
export const mountsPhase: TaskPhase = {
  name: 'mounts',
  order: 180,
  checkpoint: checkpointMounts,
  restore: restoreMounts,
};
