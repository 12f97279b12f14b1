/**
 * Task structures a process can share with its parent without being a
 * thread (the seed keeps each as an objhash object: files_struct, fs_struct,
 * mm, sighand).
 *
 * - The fd table (CLONE_FILES) and cwd/root/umask (CLONE_FS) are saved in
 *   the tree record (`shares`): restart creates the task with the same
 *   clone flags, so it shares its parent's from birth, and the `files`
 *   phase leaves a shared table to the parent's restore.
 * - The address space (CLONE_VM, as vfork or a clone() caller does) and the
 *   signal handlers (CLONE_SIGHAND, which needs CLONE_VM) are not restored
 *   shared yet: the checkpoint refuses them before saving anything.
 */
import { CkptError } from '../errors.js';
import { KCMP, type KcmpType, kcmp } from '../kernel/kcmp.js';

/** Clone flags restart can recreate a task with, to share its parent's structure. */
export const SHAREABLE_WITH_PARENT = { CLONE_FS: 0x200, CLONE_FILES: 0x400 } as const;

const KEPT: readonly { type: KcmpType; flag: number }[] = [
  { type: KCMP.FILES, flag: SHAREABLE_WITH_PARENT.CLONE_FILES },
  { type: KCMP.FS, flag: SHAREABLE_WITH_PARENT.CLONE_FS },
];

const REFUSED: readonly { type: KcmpType; what: string; flag: string }[] = [
  { type: KCMP.VM, what: 'its address space', flag: 'CLONE_VM' },
  { type: KCMP.SIGHAND, what: 'its signal handlers', flag: 'CLONE_SIGHAND' },
];

/**
 * Clone flags ({@link SHAREABLE_WITH_PARENT}) of what live task `pid`
 * shares with its parent, live task `ppid`.
 * @throws CkptError ENOTSUP when they share what restart cannot keep
 *   shared (address space, signal handlers), naming both pids
 */
export function sharedWithParent(pid: number, ppid: number): number {
  for (const s of REFUSED) {
    if (kcmp(pid, ppid, s.type) === 0) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${pid} shares ${s.what} with its parent ${ppid} (${s.flag} without being a thread); restoring that sharing is not supported yet`,
        { pid },
      );
    }
  }
  let flags = 0;
  for (const k of KEPT) if (kcmp(pid, ppid, k.type) === 0) flags |= k.flag;
  return flags;
}

/**
 * Refuse a tree root that shares its address space or signal handlers with
 * its parent outside the tree: a vfork child before its exec (its parent
 * waits for it) or a CLONE_VM child. Saved alone, it would come back with
 * memory of its own, and its parent would never see what it writes.
 * @throws CkptError ENOTSUP naming both pids
 */
export function refuseSharedWithOutsideParent(pid: number, ppid: number): void {
  if (ppid <= 0) return;
  const same = (type: KcmpType) => {
    try {
      return kcmp(pid, ppid, type) === 0;
    } catch {
      // A parent ckpt may not inspect (an init of a sandbox) shares nothing it could restore either.
      return false;
    }
  };
  for (const s of REFUSED) {
    if (same(s.type)) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${pid} shares ${s.what} with its parent ${ppid}, which is outside the tree (a vfork child before its exec, or ${s.flag}); checkpoint pid ${ppid}'s tree, or wait until pid ${pid} has started its program`,
        { pid },
      );
    }
  }
}
