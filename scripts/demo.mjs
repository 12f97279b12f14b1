#!/usr/bin/env node
// The main job of the README (`pnpm demo`): start a process, checkpoint it,
// kill it, restart it from the image, and show it continuing where it
// stopped. Needs root (ckpt ptraces the process and restores its pid).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const bin = join(root, 'apps/cli/dist/bin.js');
const dir = mkdtempSync(join(tmpdir(), 'ckpt-demo-'));
const log = join(dir, 'ticks.log');
const image = join(dir, 'counter.img');
const wait = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const lastTick = () => {
  const lines = readFileSync(log, 'utf8').trim().split('\n');
  return lines[lines.length - 1];
};
const alive = (pid) =>
  existsSync(`/proc/${pid}`) && !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z');

function ckpt(...args) {
  console.log(`\n$ ckpt ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [bin, ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
  });
  if (r.status !== 0) {
    console.error(`ckpt ${args[0]} failed (exit ${r.status})`);
    process.exit(1);
  }
  if (r.stdout) process.stdout.write(r.stdout);
  return r.stdout;
}

if (process.getuid?.() !== 0) {
  console.error('the demo needs root: ckpt ptraces the process and restores its pid');
  process.exit(1);
}

// A shell loop that counts and logs, started by `ckpt run`: in a session of
// its own, not a child of this process, with nothing but /dev/null for
// stdio (no pipe of the caller's it could share with the outside).
const script = `i=0; while :; do i=$((i+1)); echo "tick $i" >> ${log}; j=0; while [ $j -lt 40000 ]; do j=$((j+1)); done; done`;
const pid = Number(ckpt('run', '--', 'dash', '-c', script).trim());
console.log(`started a counting dash loop, pid ${pid}, logging to ${log}`);
wait(700);
console.log(`it has counted to: ${lastTick()}`);

ckpt('checkpoint', String(pid), '-o', image, '--kill');
const frozenAt = lastTick();
wait(300);
console.log(`killed; pid ${pid} alive: ${alive(pid)}; log still ends at: ${lastTick()}`);

ckpt('restart', image, '-d');
wait(700);
const after = lastTick();
console.log(
  `restored pid ${pid} alive: ${alive(pid)}; it went on from "${frozenAt}" to "${after}"`,
);
const ok = alive(pid) && Number(after.split(' ')[1]) > Number(frozenAt.split(' ')[1]);
process.kill(pid, 'SIGKILL');
rmSync(dir, { recursive: true, force: true });
console.log(
  ok
    ? '\nthe process continued where it stopped.'
    : '\nthe process did NOT continue: this is a bug.',
);
process.exit(ok ? 0 : 1);
