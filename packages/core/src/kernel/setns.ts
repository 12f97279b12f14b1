/**
 * setns(2) of ckpt's own thread into a task's namespace and back, for state
 * the kernel shows per namespace of the *caller*: the ipc namespace's
 * sysctls under /proc/sys show the namespace of whoever opens them, not of
 * the proc mount. Reading them from ckpt needs no /proc in the task's mount
 * namespace and no injected syscalls.
 *
 * Only namespaces one thread of a multi-threaded process may enter alone
 * are offered (not mount, user or pid). The switch affects the calling
 * (main) thread only; Node's other threads stay where they are.
 */
import { closeSync, openSync } from 'node:fs';
import { CkptError } from '../errors.js';
import { errno, errnoName, libc } from './libc.js';

/** Namespaces a single thread can enter with setns(2). */
export type ThreadNsType = 'ipc' | 'uts' | 'net' | 'cgroup';

const CLONE_FLAG: Record<ThreadNsType, number> = {
  ipc: 0x0800_0000,
  uts: 0x0400_0000,
  net: 0x4000_0000,
  cgroup: 0x0200_0000,
};

/**
 * Open namespace `type` of `pid` (its /proc/PID/ns link) as a handle for
 * {@link inNamespace}; close it with `closeSync`. It keeps the namespace
 * alive, even after every task in it is gone.
 */
export function openNamespace(pid: number, type: ThreadNsType): number {
  try {
    return openSync(`/proc/${pid}/ns/${type}`, 'r');
  } catch (e) {
    throw new CkptError(
      'ESYS',
      `cannot open the ${type} namespace of pid ${pid}: ${(e as Error).message}`,
      {
        pid,
        path: `/proc/${pid}/ns/${type}`,
      },
    );
  }
}

function enter(fd: number, type: ThreadNsType, what: string): void {
  if (libc().setns(fd, CLONE_FLAG[type]) === -1) {
    const err = errno();
    throw new CkptError('ESYS', `${what}: setns failed with ${errnoName(err)}`, {
      syscall: 'setns',
      errno: err,
    });
  }
}

/**
 * {@link inNamespace} in `pid`'s namespace of `type`, opened for this call.
 * @throws CkptError as openNamespace and inNamespace
 */
export function inNamespaceOf<T>(pid: number, type: ThreadNsType, what: string, fn: () => T): T {
  const fd = openNamespace(pid, type);
  try {
    return inNamespace(fd, type, what, fn);
  } finally {
    closeSync(fd);
  }
}

/**
 * Run `fn` with this thread in the namespace behind `nsFd` (see
 * {@link openNamespace}), then return to the thread's own namespace, also
 * when `fn` throws. Keep `fn` synchronous: work queued for later would run
 * back in ckpt's namespace.
 * @throws CkptError ESYS when setns fails (entering: names `what`)
 */
export function inNamespace<T>(nsFd: number, type: ThreadNsType, what: string, fn: () => T): T {
  return awayFromOwn(type, () => enter(nsFd, type, `entering the ${type} namespace ${what}`), fn);
}

/**
 * Run `fn` with this thread in a new namespace of `type` (unshare(2)),
 * then return to the thread's own, also when `fn` throws. Processes `fn`
 * spawns start in the new namespace; it lives on as long as they do.
 * @throws CkptError ESYS when unshare fails
 */
export function inNewNamespace<T>(type: ThreadNsType, fn: () => T): T {
  return awayFromOwn(
    type,
    () => {
      if (libc().unshare(CLONE_FLAG[type]) === -1) {
        const err = errno();
        throw new CkptError(
          'ESYS',
          `making a new ${type} namespace: unshare failed with ${errnoName(err)}`,
          {
            syscall: 'unshare',
            errno: err,
          },
        );
      }
    },
    fn,
  );
}

/** `leave` this thread's namespace of `type`, run `fn`, and come back (also when it throws). */
function awayFromOwn<T>(type: ThreadNsType, leave: () => void, fn: () => T): T {
  const own = openSync(`/proc/thread-self/ns/${type}`, 'r');
  try {
    leave();
    try {
      return fn();
    } finally {
      // Staying in the task's namespace would act on it for the rest of the run.
      enter(own, type, `returning to ckpt's own ${type} namespace`);
    }
  } finally {
    closeSync(own);
  }
}
