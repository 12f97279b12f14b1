/** `ckpt checkpoint`: save a live process into an image. */
import {
  CheckpointFlags,
  checkpoint,
  FdSink,
  type LeaveMode,
  resolveFreezerCgroup,
} from '@ckpt/core';
import { cliLogger, printJson, UsageError } from '../output.js';
import { terminalProgress } from '../progress.js';
import type { Command } from './command.js';

export const checkpointCommand: Command = {
  name: 'checkpoint',
  summary: 'save a running process into an image',
  usage:
    'ckpt checkpoint PID -o FILE|- [--leave-running|--kill|--leave-stopped] [--container|--subtree] [--freezer CGROUP] [--json]',
  help: `Freezes process PID, writes its whole state (memory, registers, open files,
signal state, credentials) to FILE ('-' for standard output), then lets it
continue (--leave-running, the default), kills it (--kill) or leaves it
stopped (--leave-stopped: every process of the tree is stopped; resume
them all with 'kill -CONT -- -PGID' for each process group, a 'kill -CONT
PID' resumes that one only). If the checkpoint fails, the process is left
running as it was and the image ends with an error record.

When PID is the init of a pid namespace (a container, e.g. from
'ckpt run --container'), the whole container is checkpointed and restart
recreates it in fresh namespaces; otherwise the tree under PID is a subtree,
restored in the host's namespaces. --container fails unless PID is such an
init; --subtree checkpoints even an init as a subtree.

--freezer CGROUP freezes the tree through a freezer cgroup: cgroup v1's
freezer.state, or cgroup v2's cgroup.freeze, by where CGROUP is. CGROUP is
a directory under a mounted freezer hierarchy (/sys/fs/cgroup/freezer/x, or
a cgroup2 directory such as /sys/fs/cgroup/unified/x), or else a path
inside the v1 freezer hierarchy (cgroup2 where there is none): 'x', 'x/y',
or '/x' as /proc/PID/cgroup prints it. Every task of the tree must be in
CGROUP or below it, else nothing is saved. ckpt freezes the cgroup (so no
task forks meanwhile), takes hold of every task, and keeps them stopped
until the image is complete, whatever is written to the cgroup meanwhile.
Afterwards the cgroup is as it was: if it was frozen before, it is frozen
again (with --leave-running the tasks stay frozen); if ckpt froze it, it is
thawed. The same holds if the checkpoint fails, or if ckpt is killed.`,
  options: {
    output: { type: 'string', short: 'o', description: 'image file, or - for standard output' },
    'leave-running': { type: 'boolean', description: 'let the process continue (default)' },
    kill: { type: 'boolean', description: 'kill the process once the image is complete' },
    'leave-stopped': { type: 'boolean', description: 'leave the process stopped (SIGSTOP)' },
    container: {
      type: 'boolean',
      description: 'insist that PID is a container (pid-namespace init)',
    },
    subtree: { type: 'boolean', description: 'checkpoint PID as a subtree, even if it is an init' },
    freezer: {
      type: 'string',
      description: 'freeze through this freezer cgroup (path, or name in the hierarchy)',
    },
  },
  privileged: true,
  run({ positionals, values, registry }) {
    const pidArg = positionals[0];
    if (!pidArg || positionals.length > 1 || !values.output) throw new Error('usage');
    const pid = Number(pidArg);
    if (!Number.isInteger(pid) || pid <= 0) throw new UsageError(`'${pidArg}' is not a pid`);
    const modes = (['leave-running', 'kill', 'leave-stopped'] as const).filter((m) => values[m]);
    if (modes.length > 1) throw new UsageError(`choose one of --${modes.join(', --')}`);
    const leave: LeaveMode =
      modes[0] === 'kill' ? 'kill' : modes[0] === 'leave-stopped' ? 'stopped' : 'running';
    if (values.container && values.subtree)
      throw new UsageError('choose one of --container, --subtree');
    const uflags =
      (values.container ? CheckpointFlags.CONTAINER : 0n) |
      (values.subtree ? CheckpointFlags.SUBTREE : 0n);
    // Resolved before the image file is created: a wrong name saves nothing.
    const freezer =
      values.freezer === undefined ? undefined : resolveFreezerCgroup(String(values.freezer));
    const output = String(values.output);
    if (output === '-' && process.stdout.isTTY) {
      throw new UsageError(
        'refusing to write an image to a terminal; redirect standard output or use -o FILE',
      );
    }
    const sink = FdSink.open(output);
    const warnings: string[] = [];
    const t0 = performance.now();
    try {
      // ckpt exits right after: no need to wait for a killed tree to be gone.
      const r = checkpoint({
        pid,
        output: sink,
        registry,
        leave,
        uflags,
        awaitKill: false,
        freezer,
        progress: terminalProgress(),
        logger: cliLogger(warnings),
      });
      const summary = {
        ok: true,
        pids: r.pids,
        image: output,
        bytes: r.bytes,
        records: r.records,
        pages: r.pages,
        leave,
        ...(freezer && { freezer: freezer.path, cgroupVersion: freezer.version }),
        durationMs: Math.round(performance.now() - t0),
        phasesMs: Object.fromEntries(
          Object.entries(r.durations).map(([k, v]) => [k, Math.round(v * 10) / 10]),
        ),
        warnings,
      };
      if (values.json) printJson(summary);
      else if (output !== '-') {
        process.stderr.write(
          `checkpointed pid ${r.pids.join(', ')}: ${r.pages} pages, ${(r.bytes / 2 ** 20).toFixed(1)} MiB in ${summary.durationMs} ms -> ${output}\n`,
        );
      }
    } finally {
      sink.close();
      if (sink.keptPrevious) {
        process.stderr.write(`ckpt: ${output} still holds the image it had before\n`);
      }
    }
    return 0;
  },
};
