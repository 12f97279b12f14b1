#!/usr/bin/env node
// Where the time of a tree checkpoint and restart goes: runs the engine
// in-process (no CLI start-up) on a forker tree of BENCH_TREE processes
// (default 128), BENCH_RUNS times after a warm-up run, and prints the
// median of each phase's total over all tasks, checkpoint and restart.
// `restart.finish` and `restart.release` are measured around the engine
// (not phases): the time from the last phase to the return.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = new URL('..', import.meta.url).pathname;
const cli = join(root, 'apps/cli');
// The same @ckpt/core module instance the CLI's registry uses.
const core = await import(pathToFileURL(join(cli, 'node_modules/@ckpt/core/dist/index.js')).href);
const { loadRegistry } = await import(pathToFileURL(join(cli, 'dist/index.js')).href);
// biome-ignore lint/suspicious/noUndeclaredEnvVars: optional knobs of the benchmark
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
// biome-ignore lint/suspicious/noUndeclaredEnvVars: optional knobs of the benchmark
const TREE = Number(process.env.BENCH_TREE ?? 128);

const nap = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
const work = mkdtempSync(join(tmpdir(), 'ckpt-prof-'));
const forker = join(work, 'forker');
execFileSync('gcc', ['-O2', '-o', forker, join(root, 'bench/forker.c')]);
const pidfile = join(work, 'tree.pid');
function startTree() {
  rmSync(pidfile, { force: true });
  execFileSync('sh', ['-c', `setsid ${forker} ${TREE} ${pidfile} </dev/null >/dev/null 2>&1 &`]);
  while (!existsSync(pidfile) || !readFileSync(pidfile, 'utf8').endsWith('\n')) nap(10);
  return Number(readFileSync(pidfile, 'utf8'));
}
const waitGone = (pid) => {
  while (existsSync(`/proc/${pid}`)) nap(2);
};

// BENCH_COUNT=1: count injected syscalls per phase and syscall number.
// biome-ignore lint/suspicious/noUndeclaredEnvVars: optional knob of the benchmark
const COUNT = process.env.BENCH_COUNT === '1';
const counts = new Map();
let phase = '-';
if (COUNT) {
  for (const C of [core.CheckpointCtx, core.RestartCtx]) {
    const timed = C.prototype.timed;
    C.prototype.timed = function (name, fn) {
      const was = phase;
      phase = `${C.name}.${name}`;
      try {
        return timed.call(this, name, fn);
      } finally {
        phase = was;
      }
    };
  }
  const callAt = core.SyscallInjector.prototype.callAt;
  core.SyscallInjector.prototype.callAt = function (at, nr, args) {
    const k = `${phase} nr ${nr}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
    return callAt.call(this, at, nr, args);
  };
  const startBatch = core.SyscallInjector.prototype.startBatch;
  core.SyscallInjector.prototype.startBatch = function (plan, calls) {
    const k = `${phase} batch of ${calls.map((c) => c.nr).join(',')}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
    return startBatch.call(this, plan, calls);
  };
}
const registry = await loadRegistry();
const samples = [];
for (let i = -1; i < RUNS; i++) {
  const pid = startTree();
  const img = join(work, 'img');
  const sink = core.FdSink.open(img);
  let t0 = performance.now();
  let c;
  try {
    c = core.checkpoint({ pid, output: sink, registry, leave: 'kill' });
  } finally {
    sink.close();
  }
  const ckTotal = performance.now() - t0;
  for (const p of c.pids) waitGone(p);
  const source = core.FdSource.open(img);
  t0 = performance.now();
  let r;
  try {
    r = core.restart({ input: source, registry });
  } finally {
    source.close();
  }
  const rsTotal = performance.now() - t0;
  for (const p of r.pids) process.kill(p, 'SIGKILL');
  core.reap(r.root); // the restored root is our child
  for (const p of r.pids) waitGone(p);
  if (i < 0) continue;
  const s = { 'checkpoint.total': ckTotal, 'restart.total': rsTotal };
  for (const [k, v] of Object.entries(c.durations)) s[`checkpoint.${k}`] = v;
  for (const [k, v] of Object.entries(r.durations)) s[`restart.${k}`] = v;
  const phases = Object.entries(r.durations)
    .filter(([k]) => k !== 'create')
    .reduce((a, [, v]) => a + v, 0);
  s['restart.other (finish, release)'] = rsTotal - phases - (r.durations.create ?? 0);
  samples.push(s);
}
rmSync(work, { recursive: true, force: true });
if (COUNT) {
  const runs = RUNS + 1;
  console.log(`injected syscalls per run (tree of ${TREE})`);
  for (const [k, v] of [...counts].sort()) console.log(`${k.padEnd(40)} ${v / runs}`);
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const keys = [...new Set(samples.flatMap((s) => Object.keys(s)))];
console.log(`tree of ${TREE}, in-process, medians of ${RUNS} runs (ms, summed over tasks)`);
for (const k of keys)
  console.log(`${k.padEnd(36)} ${median(samples.map((s) => s[k] ?? 0)).toFixed(1)}`);
