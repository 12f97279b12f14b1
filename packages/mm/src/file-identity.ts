/**
 * The identity of a file a process maps privately (its program, its
 * libraries, data files): size and modification time, saved with each such
 * region. Restart maps the file again by path and takes every page the
 * process did not change from it, so a file changed since the checkpoint (a
 * package upgrade, another machine's libc) would run other code at the same
 * addresses: restart refuses it, naming the file, before the process runs.
 */
import { statSync } from 'node:fs';
import {
  type CheckpointCtx,
  type CheckpointTask,
  CkptError,
  mapFilesPath,
  type RestartCtx,
  type RestartTask,
  type SavedVma,
  type VmaInfo,
} from '@ckpt/core';

/** Size and mtime (ns) of a mapped file; zeros: not checked. */
export interface FileIdentity {
  fileSize: bigint;
  fileMtimeNs: bigint;
}

export const NO_IDENTITY: FileIdentity = { fileSize: 0n, fileMtimeNs: 0n };

/** Identities seen by a checkpoint, by device and inode (a tree maps the same files). */
const seen = new WeakMap<CheckpointCtx, Map<string, FileIdentity>>();

/** The identity of the file `vma` maps (the mapped inode itself, through map_files). */
export function mappedFileIdentity(
  ctx: CheckpointCtx,
  task: CheckpointTask,
  vma: VmaInfo,
): FileIdentity {
  let byInode = seen.get(ctx);
  if (!byInode) {
    byInode = new Map();
    seen.set(ctx, byInode);
  }
  const key = `${vma.devMajor}:${vma.devMinor}:${vma.inode}`;
  let id = byInode.get(key);
  if (!id) {
    const st = statSync(mapFilesPath(task.pid, vma), { bigint: true });
    id = { fileSize: st.size, fileMtimeNs: st.mtimeNs };
    byInode.set(key, id);
  }
  return id;
}

/** What restart found at each path, once per restart. */
const found = new WeakMap<RestartCtx, Map<string, FileIdentity | undefined>>();

/**
 * Refuse to map `vma` from its file when the file at its path is not the
 * one the checkpoint saw (size or mtime differ). A missing file is left to
 * the open, which says so.
 * @throws CkptError ESTALE naming the file, the region and what changed
 */
export function checkMappedFile(
  ctx: RestartCtx,
  task: RestartTask,
  vma: SavedVma & Partial<FileIdentity>,
): void {
  if (!vma.fileMtimeNs) return;
  let byPath = found.get(ctx);
  if (!byPath) {
    byPath = new Map();
    found.set(ctx, byPath);
  }
  if (!byPath.has(vma.path)) {
    const st = statSync(`/proc/${task.pid}/root${vma.path}`, {
      bigint: true,
      throwIfNoEntry: false,
    });
    byPath.set(vma.path, st && { fileSize: st.size, fileMtimeNs: st.mtimeNs });
  }
  const now = byPath.get(vma.path);
  if (!now || (now.fileSize === vma.fileSize && now.fileMtimeNs === vma.fileMtimeNs)) return;
  const when = (ns: bigint) => new Date(Number(ns / 1_000_000n)).toISOString();
  const changes = [
    now.fileSize !== vma.fileSize ? `size ${vma.fileSize} -> ${now.fileSize}` : '',
    now.fileMtimeNs !== vma.fileMtimeNs
      ? `modified ${when(vma.fileMtimeNs!)} -> ${when(now.fileMtimeNs)}`
      : '',
  ].filter((c) => c !== '');
  throw new CkptError(
    'ESTALE',
    `pid ${task.savedPid}: ${vma.path}, mapped at 0x${vma.start.toString(16)}-0x${vma.end.toString(16)}, has changed since the checkpoint (${changes.join(', ')}); the process would run on a different file: restart where the files are as they were`,
    { pid: task.savedPid, path: vma.path, address: vma.start },
  );
}
