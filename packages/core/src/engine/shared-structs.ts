/**
 * Task structures a process can share with its parent without being a
 * thread: the address space (CLONE_VM, as vfork or a clone() caller does),
 * the fd table (CLONE_FILES), cwd/root/umask (CLONE_FS) and the signal
 * handlers (CLONE_SIGHAND). Restart rebuilds each task's own copy of
 * these, so sharing would silently end; until it is restored as shared,
 * the checkpoint refuses it up front.
 */
import { CkptError } from '../errors.js';
import { KCMP, type KcmpType, kcmp } from '../kernel/kcmp.js';
import { readStat } from '../proc/index.js';

const SHARED: readonly { type: KcmpType; what: string; flag: string }[] = [
  { type: KCMP.VM, what: 'its address space', flag: 'CLONE_VM' },
  { type: KCMP.FILES, what: 'its fd table', flag: 'CLONE_FILES' },
  { type: KCMP.FS, what: 'its cwd, root and umask', flag: 'CLONE_FS' },
  { type: KCMP.SIGHAND, what: 'its signal handlers', flag: 'CLONE_SIGHAND' },
];

/**
 * Refuse a tree in which a live task shares one of the structures above
 * with its parent.
 * @param live - pids of the tree's live tasks
 * @throws CkptError ENOTSUP naming both pids and what they share
 */
export function refuseSharedTaskStructs(live: readonly number[]): void {
  const inTree = new Set(live);
  for (const pid of live) {
    const ppid = readStat(pid).ppid;
    if (!inTree.has(ppid)) continue;
    for (const s of SHARED) {
      if (kcmp(pid, ppid, s.type) === 0) {
        throw new CkptError(
          'ENOTSUP',
          `pid ${pid} shares ${s.what} with its parent ${ppid} (${s.flag} without being a thread); restoring that sharing is not supported yet`,
          { pid },
        );
      }
    }
  }
}
