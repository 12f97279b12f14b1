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
import { injectedReads } from './reads.js';
import { sighandRecord } from './records.js';

const KSIGACTION_SIZE = 32;
const SIGKILL = 9;
const SIGSTOP = 19;

/** Write the sighand record: the action of every signal 1..nsig (see reads.ts). */
export function checkpointSighand(ctx: CheckpointCtx, task: CheckpointTask): void {
  const nsig = task.arch.nsig;
  const buf = injectedReads.get(task).actions;
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
 * Read the sighand record: the actions to install, as `struct
 * kernel_sigaction` buffers, for every signal not at its default. Setting
 * SIG_IGN discards pending instances of that signal, so they are installed
 * before the pending signals are queued again.
 */
export function readSighand(ctx: RestartCtx, task: RestartTask): { sig: number; act: Buffer }[] {
  const { actions } = ctx.read(sighandRecord);
  if (actions.length !== task.arch.nsig) {
    throw new CkptError(
      'EBADREC',
      `pid ${task.savedPid}: the image has actions for ${actions.length} signals, this machine has ${task.arch.nsig}`,
      { pid: task.savedPid, recordType: sighandRecord.type },
    );
  }
  const out: { sig: number; act: Buffer }[] = [];
  actions.forEach((a, i) => {
    const sig = i + 1;
    // Their action cannot change (rt_sigaction refuses them).
    if (sig === SIGKILL || sig === SIGSTOP) return;
    // A new task starts with every action at its default (the restore stub
    // was spawned with default dispositions): only the others need setting.
    if (a.handler === 0n && a.flags === 0n && a.restorer === 0n && a.mask === 0n) return;
    const act = Buffer.alloc(KSIGACTION_SIZE);
    [a.handler, a.flags, a.restorer, a.mask].forEach((w, j) => {
      act.writeBigUInt64LE(w, j * 8);
    });
    out.push({ sig, act });
  });
  return out;
}
