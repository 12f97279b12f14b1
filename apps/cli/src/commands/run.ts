/** `ckpt run`: start a workload ready to be checkpointed, and leave it running. */
import { closeSync, openSync, writeSync } from 'node:fs';
import { CkptError, startWorkload } from '@ckpt/core';
import { printJson } from '../output.js';
import type { Command } from './command.js';

function openPidfile(path: string): number {
  try {
    return openSync(path, 'w', 0o644);
  } catch (e) {
    throw new CkptError('ENOENT', `cannot write pidfile ${path}: ${(e as Error).message}`, {
      path,
    });
  }
}

export const runCommand: Command = {
  name: 'run',
  summary: 'start a process or a container to checkpoint later',
  usage:
    'ckpt run [--container [--net] [--time]] [--pidfile FILE] [--stdout FILE] [--stderr FILE] [--json] -- CMD [ARGS...]',
  help: `Starts CMD in a new session, detached from ckpt: standard input from
/dev/null, output to /dev/null unless --stdout/--stderr name files. Prints
the pid of the workload's root as the host sees it and returns, leaving it
running; checkpoint it with 'ckpt checkpoint PID'.

With --container, CMD runs as the init (pid 1) of fresh pid, uts, ipc and
mount namespaces, in its own session, with /proc mounted for the new pid
namespace so 'ps' inside shows only the container. The namespaces are made
by util-linux 'unshare --fork', which ckpt ends once the init runs CMD: the
init is then reparented to the host's init (or subreaper), like any
detached workload, and the container references nothing outside itself.
Killing the init ends the container. With --net as well, the container
also gets a network namespace of its own, with nothing but its loopback
interface (up): a checkpoint saves it, and restart makes it again. With
--time, it gets a time namespace of its own: its CLOCK_MONOTONIC and
CLOCK_BOOTTIME then continue after a restart, here or on another machine,
from the values they had at checkpoint, as if the container had been
suspended meanwhile (without it they jump by the time between, or to
another machine's uptime).`,
  options: {
    container: { type: 'boolean', description: 'run CMD as the init of new namespaces' },
    net: {
      type: 'boolean',
      description: 'with --container: a network namespace of its own (loopback only)',
    },
    time: {
      type: 'boolean',
      description: 'with --container: a time namespace of its own (clocks continue after restart)',
    },
    pidfile: { type: 'string', description: "write the root's pid to this file" },
    stdout: { type: 'string', description: 'standard output of the workload (default /dev/null)' },
    stderr: { type: 'string', description: 'standard error of the workload (default /dev/null)' },
  },
  run({ positionals, values }) {
    if (positionals.length === 0) throw new Error('usage');
    // Opened before the start, so a bad path cannot leave an unreported workload behind.
    const pidfile = values.pidfile === undefined ? undefined : openPidfile(String(values.pidfile));
    try {
      const w = startWorkload({
        argv: positionals,
        container: Boolean(values.container),
        network: Boolean(values.net),
        time: Boolean(values.time),
        stdout: values.stdout === undefined ? undefined : String(values.stdout),
        stderr: values.stderr === undefined ? undefined : String(values.stderr),
      });
      if (pidfile !== undefined) writeSync(pidfile, `${w.pid}\n`);
      if (values.json) printJson({ ok: true, ...w });
      else process.stdout.write(`${w.pid}\n`);
    } finally {
      if (pidfile !== undefined) closeSync(pidfile);
    }
    return 0;
  },
};
