/**
 * Signal actions (linux-cr's sighand_struct): handler, flags, restorer and
 * mask of every signal, read and set with injected rt_sigaction(2), which
 * exchanges `struct kernel_sigaction` {handler, flags, restorer, mask}.
 *
 * The actions are saved per task: threads, which share them, are not
 * supported yet; when they are, this becomes a shared object keyed by
 * kcmp(KCMP_SIGHAND).
 */
import type { CheckpointCtx, RestartCtx } from '../context.js';
import { CkptError } from '../errors.js';
import type { CheckpointTask, RestartTask } from '../task.js';
import { sighandRecord } from './records.js';

const KSIGACTION_SIZE = 32;
/** sizeof(sigset_t) the kernel expects as rt_sigaction's last argument. */
const SIGSET_SIZE = 8;
const SIGKILL = 9;
const SIGSTOP = 19;

/** Write the sighand record: the action of every signal 1..nsig. */
export function checkpointSighand(ctx: CheckpointCtx, task: CheckpointTask): void {
  const nsig = task.arch.nsig;
  // One slot per signal, read back in one go.
  const base = task.sys.scratch(nsig * KSIGACTION_SIZE);
  for (let sig = 1; sig <= nsig; sig++) {
    const slot = base + BigInt((sig - 1) * KSIGACTION_SIZE);
    task.sys.check(
      'rt_sigaction',
      [sig, 0, slot, SIGSET_SIZE],
      `reading the action of signal ${sig}`,
    );
  }
  const buf = task.mem.read(base, nsig * KSIGACTION_SIZE);
  const word = (sig: number, i: number) => buf.readBigUInt64LE((sig - 1) * KSIGACTION_SIZE + i * 8);
  ctx.write(sighandRecord, {
    actions: Array.from({ length: nsig }, (_, i) => ({
      handler: word(i + 1, 0),
      flags: word(i + 1, 1),
      restorer: word(i + 1, 2),
      mask: word(i + 1, 3),
    })),
  });
}

/**
 * Read the sighand record and install every action. Setting SIG_IGN
 * discards pending instances of that signal, so this runs before the
 * pending signals are queued again.
 */
export function restoreSighand(ctx: RestartCtx, task: RestartTask): void {
  const { actions } = ctx.read(sighandRecord);
  if (actions.length !== task.arch.nsig) {
    throw new CkptError(
      'EBADREC',
      `pid ${task.savedPid}: the image has actions for ${actions.length} signals, this machine has ${task.arch.nsig}`,
      { pid: task.savedPid, recordType: sighandRecord.type },
    );
  }
  const base = task.sys.scratch(KSIGACTION_SIZE);
  const act = Buffer.alloc(KSIGACTION_SIZE);
  actions.forEach((a, i) => {
    const sig = i + 1;
    // Their action cannot change (rt_sigaction refuses them).
    if (sig === SIGKILL || sig === SIGSTOP) return;
    // A new task starts with every action at its default (the restore stub
    // was spawned with default dispositions): only the others need setting.
    if (a.handler === 0n && a.flags === 0n && a.restorer === 0n && a.mask === 0n) return;
    [a.handler, a.flags, a.restorer, a.mask].forEach((w, j) => {
      act.writeBigUInt64LE(w, j * 8);
    });
    task.mem.write(base, act);
    task.sys.check(
      'rt_sigaction',
      [sig, base, 0, SIGSET_SIZE],
      `setting the action of signal ${sig}`,
    );
  });
}
