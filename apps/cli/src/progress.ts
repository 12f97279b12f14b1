/** A progress bar on stderr when it is a terminal; nothing otherwise. */
import type { Progress } from '@ckpt/core';

/** Progress for the CLI: a one-line bar, redrawn at most 10 times a second. */
export function terminalProgress(enabled = process.stderr.isTTY === true): Progress {
  if (!enabled) return { start() {}, update() {}, end() {} };
  let label = '';
  let total = 0;
  let last = 0;
  let shown = false;
  const draw = (done: number) => {
    const width = 30;
    const frac = total > 0 ? Math.min(done / total, 1) : 0;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    const mib = ((done * 4096) / 2 ** 20).toFixed(0);
    process.stderr.write(`\r${label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${mib} MiB`);
    shown = true;
  };
  return {
    start(l, t) {
      label = l;
      total = t;
      last = 0;
    },
    update(done) {
      const now = Date.now();
      if (now - last < 100) return;
      last = now;
      draw(done);
    },
    end() {
      if (shown) process.stderr.write('\r\x1b[K');
      shown = false;
    },
  };
}
