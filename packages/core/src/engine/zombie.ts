/**
 * Restoring a zombie (the seed's "support for zombie processes"): the task
 * is created like any other, as a child of its restored parent, gets its
 * comm back, and then exits with its saved status, so that its parent can
 * wait for it and see exactly that status. It runs no code of its own: the
 * exit is one injected exit_group(2), or a signal delivered through ptrace
 * for a task that was killed by one.
 *
 * Its exit sends SIGCHLD to the parent, which was not pending at checkpoint
 * (linux-cr's PF_RESTARTING suppressed it): the parent has every signal
 * blocked during restore, and its `signals` phase discards what arrived
 * before it queues the saved pending signals again.
 */
import { CkptError } from '../errors.js';
import { errno, libc, sysError } from '../kernel/libc.js';
import { PR } from '../kernel/prctl.js';
import { cont, getRegset, NT, setRegset, setSigmask } from '../kernel/ptrace.js';
import { describeEnd, type WaitStatus, waitStop } from '../kernel/wait.js';
import type { RestoringTask } from './restoring-task.js';
import { cString, stage } from './task-io.js';

const RLIMIT_CORE = 4;
const KSIGACTION_SIZE = 32;
const SIGSET_SIZE = 8;
const ALL_SIGNALS = (1n << 64n) - 1n;

/**
 * Make `task` a zombie with exit status `status` (waitpid(2) form) and
 * command name `comm`. On return the task is dead, no longer traced, and
 * waits for its parent.
 */
export function zombify(task: RestoringTask, status: number, comm: string): void {
  const signal = status & 0x7f;
  const [name] = stage(task, [cString(comm)]);
  task.sys.check('prctl', [PR.SET_NAME, name!], 'setting the name of a zombie');
  if (signal !== 0) {
    // The signal must kill it, as it did: with its default action, and
    // without writing a core dump (the checkpoint refused zombies that
    // dumped core).
    const [act, limit] = stage(task, [Buffer.alloc(KSIGACTION_SIZE), Buffer.alloc(16)]);
    task.sys.check('rt_sigaction', [signal, act!, 0, SIGSET_SIZE], `resetting signal ${signal}`);
    task.sys.check('prlimit64', [0, RLIMIT_CORE, limit!, 0], 'disabling core dumps');
  }
  const syscallAddr = task.restorer.start;
  task.closeInjection();
  const { pid, arch } = task;
  let end: WaitStatus;
  if (signal === 0) {
    const regs = getRegset(pid, NT.PRSTATUS, arch.convention.regsSize);
    arch.convention.setSyscall(regs, arch.syscalls.exit_group, [BigInt((status >> 8) & 0xff)]);
    arch.convention.setIp(regs, syscallAddr);
    setRegset(pid, NT.PRSTATUS, regs);
    cont(pid, 0);
    end = waitStop(pid);
  } else {
    setSigmask(pid, ALL_SIGNALS & ~(1n << BigInt(signal - 1)));
    if (libc().kill(pid, signal) === -1) {
      throw sysError('kill', errno(), `sending signal ${signal} to zombie-to-be ${pid}`, { pid });
    }
    cont(pid, 0);
    // Let the signal through its signal-delivery-stop; other stops resume.
    for (end = waitStop(pid); end.kind === 'stopped'; end = waitStop(pid)) {
      cont(pid, end.stop === 'signal-delivery' ? end.signal : 0);
    }
  }
  const got = end.kind === 'exited' ? end.code << 8 : end.kind === 'signaled' ? end.signal : -1;
  if (got !== status) {
    throw new CkptError(
      'ESYS',
      `zombie pid ${pid} should have ended with status 0x${status.toString(16)}, but ${describeEnd(end)}`,
      { pid },
    );
  }
}
