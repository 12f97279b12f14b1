/**
 * Restoring a task that was stopped by job control (SIGSTOP, SIGTSTP, …).
 * Its parent was told (SIGCHLD, CLD_STOPPED) when it stopped, before the
 * checkpoint; telling it again at restart would be a signal that was not
 * pending then (the seed's PF_RESTARTING rule). So the task is stopped
 * right after it is created, while its parent's signals are still to be
 * restored — the `signals` phase discards what arrived during restore —
 * and at the end it is only detached: a task in a group stop stays in it,
 * and no one is told again. It runs no code of its own meanwhile; ckpt's
 * injected syscalls still run it as its tracer.
 */
import { CkptError } from '../errors.js';
import { errno, libc, sysError } from '../kernel/libc.js';
import { cont } from '../kernel/ptrace.js';
import { waitForStop } from '../kernel/wait.js';

const SIGSTOP = 19;

/**
 * Put created task `pid` (traced by ckpt, in a ptrace stop) into a job
 * control stop. On return it is in its group stop, still traced.
 */
export function enterJobStop(pid: number): void {
  if (libc().kill(pid, SIGSTOP) === -1) {
    throw sysError('kill', errno(), `stopping pid ${pid} as it was at checkpoint`, { pid });
  }
  // The signal is taken on the way back to user space, before any
  // instruction runs: first its signal-delivery stop, then, let through,
  // the group stop.
  cont(pid, 0);
  let st = waitForStop(pid);
  for (let i = 0; st.stop !== 'group' && i < 4; i++) {
    cont(pid, st.stop === 'signal-delivery' ? st.signal : 0);
    st = waitForStop(pid);
  }
  if (st.stop !== 'group') {
    throw new CkptError(
      'ESYS',
      `pid ${pid} did not enter its job-control stop (last stop: ${st.stop}, signal ${st.signal})`,
      { pid },
    );
  }
}
