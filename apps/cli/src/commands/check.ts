/** `ckpt check`: which kernel features ckpt relies on are present here. */
import { checkKernel } from '@ckpt/core';
import { printJson } from '../output.js';
import type { Command } from './command.js';

export const checkCommand: Command = {
  name: 'check',
  summary: 'report the kernel features ckpt relies on and whether each is present',
  usage: 'ckpt check [--json]',
  help: `Probes, on this machine, each kernel interface ckpt uses (ptrace seize and
interrupt, syscall injection, /proc/PID/mem and pagemap, kcmp, pidfds,
clone3 with set_tid, PR_SET_MM_MAP, the CPU's extended state) by using it on
a throwaway process, and the capabilities ckpt holds. Exits 1 when a
required feature is missing.`,
  options: {},
  run({ values, registry }) {
    const checks = checkKernel(registry);
    const ok = checks.every((c) => c.ok || !c.required);
    if (values.json) {
      printJson({ ok, checks });
    } else {
      const width = Math.max(...checks.map((c) => c.name.length));
      for (const c of checks) {
        const mark = c.ok ? 'ok     ' : c.required ? 'MISSING' : 'absent ';
        process.stdout.write(`${mark}  ${c.name.padEnd(width)}  ${c.detail}\n`);
      }
      process.stdout.write(
        ok
          ? 'ckpt can checkpoint and restart here.\n'
          : 'ckpt cannot work here: see MISSING above.\n',
      );
    }
    return ok ? 0 : 1;
  },
};
