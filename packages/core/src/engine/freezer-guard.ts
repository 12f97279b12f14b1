/**
 * Putting a freezer cgroup back as it was when ckpt dies while it has
 * changed its state. Tasks need no such help: the kernel detaches a dead
 * tracer's tracees and they run on. A cgroup state is not undone by
 * anyone: a cgroup ckpt froze would stay frozen, one it thawed would stay
 * thawed.
 *
 * So before ckpt touches the state it starts a guard: a tiny shell that
 * reads one line from a pipe whose only writer is ckpt. A line means "done,
 * leave it"; end-of-file without one means ckpt died (SIGKILL included),
 * and the guard writes the state back. It runs in its own session, so a ^C
 * at the terminal that kills ckpt does not kill the guard too.
 */
import { closeSync, writeSync } from 'node:fs';
import { CkptError } from '../errors.js';
import { pipe2 } from '../kernel/pipe.js';
import { spawnProcess } from '../kernel/spawn.js';
import { reap } from '../kernel/wait.js';
import { O_CLOEXEC } from '../proc/fdinfo.js';
import type { FreezerCgroup } from './freezer.js';

const GUARD_SCRIPT = 'read -r done || printf %s "$1" > "$2"';

/** Restores a cgroup's freezer state if ckpt dies before {@link disarm}. */
export class FreezerGuard {
  private constructor(
    private readonly pid: number,
    private fd: number,
  ) {}

  /**
   * Start a guard that, should this process die first, writes `frozen`'s
   * state (frozen or thawed) to `cgroup`.
   * @throws CkptError when /bin/sh cannot be started
   */
  static arm(cgroup: FreezerCgroup, frozen: boolean): FreezerGuard {
    // Close-on-exec: no other child of ours may hold the write end open.
    const [readEnd, writeEnd] = pipe2(O_CLOEXEC);
    let pid: number;
    try {
      pid = spawnProcess(
        [
          '/bin/sh',
          '-c',
          GUARD_SCRIPT,
          'ckpt-freezer-guard',
          cgroup.stateValue(frozen),
          cgroup.stateFile,
        ],
        { setsid: true, searchPath: false, stdio: [{ fd: readEnd }, 'null', 'null'] },
      );
    } catch (e) {
      closeSync(writeEnd);
      throw new CkptError(
        'ESYS',
        `cannot start the guard that restores cgroup ${cgroup} should ckpt die: ${(e as Error).message}`,
        { path: cgroup.path },
        { cause: e },
      );
    } finally {
      closeSync(readEnd);
    }
    return new FreezerGuard(pid, writeEnd);
  }

  /** ckpt is done with the cgroup: the guard exits without writing. */
  disarm(): void {
    if (this.fd < 0) return;
    try {
      writeSync(this.fd, 'done\n');
    } catch {
      // The guard is gone already (killed?): there is nothing to call off.
    }
    closeSync(this.fd);
    this.fd = -1;
    reap(this.pid);
  }
}
