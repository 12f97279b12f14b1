/**
 * Containers: a tree whose root is the init of a pid namespace (linux-cr's
 * whole-container checkpoint, as opposed to `CHECKPOINT_SUBTREE`). On
 * restart the root is created in fresh pid, uts, ipc and mount namespaces
 * (see `CLONE_NEW_CONTAINER` in mktree.ts), and its mount namespace gets
 * its own /proc for the new pid namespace, as `ckpt run --container` made it.
 */
import { CkptError } from '../errors.js';
import { readStatus } from '../proc/index.js';
import type { TreeEntry } from './sessions.js';
import { cString, stage, type TaskAccess } from './task-io.js';

const MS_NOSUID = 0x2;
const MS_NODEV = 0x4;
const MS_NOEXEC = 0x8;
const MS_REC = 0x4000;
const MS_PRIVATE = 0x40000;

/**
 * Whether the task with NSpid `nsPids` (as ckpt sees it) is the init of a
 * pid namespace below ckpt's own.
 */
export function isPidNsInit(nsPids: readonly number[]): boolean {
  const own = readStatus(process.pid).nsPid.length;
  return nsPids.length > own && nsPids[nsPids.length - 1] === 1;
}

/**
 * Refuse, before anything is created, a container tree restart cannot
 * rebuild: every task must be one level below ckpt's pid namespace, in the
 * root's (nested pid namespaces are not supported yet).
 * @throws CkptError ENOTSUP / EBADREC naming the task
 */
export function checkContainerTree(tree: readonly TreeEntry[]): void {
  const root = tree[0]!;
  if (root.nsPids.length < 2 || root.nsPids.at(-1) !== 1) {
    throw new CkptError(
      'EBADREC',
      `the image is a container, but its root pid ${root.pid} was not a pid-namespace init (NSpid ${root.nsPids.join(' ')})`,
      { pid: root.pid },
    );
  }
  for (const e of tree) {
    if (e.nsPids.length !== root.nsPids.length) {
      throw new CkptError(
        'ENOTSUP',
        `pid ${e.pid} is in a nested pid namespace (NSpid ${e.nsPids.join(' ')}, the container's init has ${root.nsPids.join(' ')}); nested pid namespaces are not supported yet`,
        { pid: e.pid },
      );
    }
  }
}

/**
 * The set_tid levels (innermost first) of `entry` in a restarted container:
 * its saved pid in the container and in ckpt's namespace, with `noPids` only the
 * root's pid 1 (every other pid is then chosen by the kernel).
 */
export function containerTids(
  entry: TreeEntry,
  isRoot: boolean,
  noPids: boolean,
): number[] | undefined {
  if (noPids) return isRoot ? [1] : undefined;
  // One new pid namespace: the innermost pid, then the pid in ckpt's.
  return [entry.nsPids.at(-1)!, entry.nsPids[0]!];
}

/**
 * In the (stopped) root of a restarted container: make every mount of its
 * new mount namespace private, so nothing propagates back to the host, then
 * mount a proc for its new pid namespace on /proc.
 */
export function mountContainerProc(task: TaskAccess): void {
  const [root, proc, fstype, target] = stage(task, [
    cString('/'),
    cString('proc'),
    cString('proc'),
    cString('/proc'),
  ]);
  task.sys.check(
    'mount',
    [0, root!, 0, MS_REC | MS_PRIVATE, 0],
    `making the mounts of the container's mount namespace private (pid ${task.pid})`,
  );
  task.sys.check(
    'mount',
    [proc!, target!, fstype!, MS_NOSUID | MS_NODEV | MS_NOEXEC, 0],
    `mounting /proc for the container's pid namespace (pid ${task.pid})`,
  );
}
