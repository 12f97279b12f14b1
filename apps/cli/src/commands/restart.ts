/** `ckpt restart`: bring an image back to life. */
import { writeFileSync } from 'node:fs';
import { CkptError, FdSource, restart } from '@ckpt/core';
import { afterRelease, beginWait, type Waiter, waitInForeground } from '../foreground.js';
import { cliLogger, printJson, UsageError } from '../output.js';
import { terminalProgress } from '../progress.js';
import type { Command } from './command.js';

function parseInheritFds(specs: string[]): Map<number, number> {
  const map = new Map<number, number>();
  for (const spec of specs) {
    const m = /^(\d+):(\d+)$/.exec(spec);
    if (!m) throw new UsageError(`--inherit-fd wants SAVED:FD (e.g. 1:3), not '${spec}'`);
    map.set(Number(m[1]), Number(m[2]));
  }
  return map;
}

export const restartCommand: Command = {
  name: 'restart',
  summary: 'restore a process from an image and let it continue',
  usage:
    'ckpt restart FILE|- [-d] [--pidfile FILE] [--frozen] [--no-pids] [--inherit-fd SAVED:FD] [--json]',
  help: `Recreates the checkpointed process with its original pid, memory,
registers, files, signal state and credentials, and lets it continue where
it stopped. Without -d, ckpt waits for it and exits with its exit status
(128+N if it dies of signal N), as a shell waits for a job: in a terminal's
foreground it hands the foreground to the restored process (Ctrl-C reaches
it), and signals sent to ckpt (SIGINT, SIGTERM, SIGHUP, SIGQUIT) are passed
on; with -d it prints the pid and returns.

Standard input, output and error that led outside the checkpointed process
(a terminal, a pipe) are reconnected to ckpt restart's own; --inherit-fd
SAVED:FD connects the saved fd SAVED to this command's fd FD instead.

With --frozen, every restored process is left stopped: 'kill -CONT -- -PGID'
resumes a whole process group ('kill -CONT PID' only that process, and a
shell then waits for its stopped children).

If anything fails, every process the restart created is killed and one
error line says why; a pid already in use is reported with a hint to use
--no-pids, which restores under a new pid.`,
  options: {
    detach: {
      type: 'boolean',
      short: 'd',
      description: 'return once the process runs; print its pid',
    },
    pidfile: { type: 'string', description: 'write the restored pid to this file' },
    frozen: { type: 'boolean', description: 'leave the restored process stopped' },
    'no-pids': {
      type: 'boolean',
      description:
        'restore under new pids (inside a pid namespace the restart creates, a container keeps its own)',
    },
    'inherit-fd': {
      type: 'string',
      multiple: true,
      description: 'SAVED:FD — connect saved external fd to our fd',
    },
  },
  privileged: true,
  async run({ positionals, values, registry }) {
    const file = positionals[0];
    if (!file || positionals.length > 1) throw new Error('usage');
    const inheritFds = parseInheritFds((values['inherit-fd'] as string[] | undefined) ?? []);
    const source = FdSource.open(file);
    const warnings: string[] = [];
    const t0 = performance.now();
    let r: ReturnType<typeof restart>;
    let waiter: Waiter | undefined;
    try {
      r = restart({
        input: source,
        registry,
        noPids: Boolean(values['no-pids']),
        frozen: Boolean(values.frozen),
        inheritFds,
        progress: terminalProgress(),
        logger: cliLogger(warnings),
        // Waiting: the restored job has the terminal, and ckpt passes
        // signals on, from the moment it runs.
        beforeRelease: values.detach
          ? undefined
          : (root, info) => {
              waiter = beginWait(root, info);
            },
      });
    } finally {
      source.close();
    }
    const durationMs = Math.round(performance.now() - t0);
    if (values.pidfile) writeFileSync(String(values.pidfile), `${r.root}\n`);
    const summary = {
      ok: true,
      pid: r.root,
      pids: r.pids,
      pages: r.pages,
      bytes: r.bytes,
      durationMs,
      warnings,
    };
    if (values.detach) {
      if (values.json) printJson(summary);
      else process.stdout.write(`${r.root}\n`);
      return 0;
    }
    if (values.json) printJson(summary);
    if (waiter) afterRelease(waiter);
    const end = waiter ? await waitInForeground(waiter) : undefined;
    if (!end) throw new CkptError('ESRCH', `lost track of restored pid ${r.root}`, { pid: r.root });
    if (end.kind === 'exited') return end.code;
    if (end.kind === 'signaled') return 128 + end.signal;
    return 1;
  },
};
