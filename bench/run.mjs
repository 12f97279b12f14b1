#!/usr/bin/env node
// `pnpm bench`: checkpoint and restart processes holding 256 MiB and 1 GiB
// of random, touched memory, with the image in the page cache, and print
// per size: checkpoint time, frozen time, restart time, image bytes against
// RSS, and throughput. Times are wall-clock of the real `ckpt` commands
// (Node start-up included), medians of RUNS runs.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

const root = new URL('..', import.meta.url).pathname;
const bin = join(root, 'apps/cli/dist/bin.js');
// biome-ignore lint/suspicious/noUndeclaredEnvVars: optional knobs of the benchmark
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
// Empty BENCH_SIZES: only the tree line.
// biome-ignore lint/suspicious/noUndeclaredEnvVars: optional knobs of the benchmark
const SIZES = (process.env.BENCH_SIZES ?? '256,1024')
  .split(',')
  .filter((s) => s.trim() !== '')
  .map(Number);

if (process.getuid?.() !== 0) {
  console.error('pnpm bench needs root (it ptraces and restores pids)');
  process.exit(1);
}
if (!existsSync(bin)) {
  console.error('build first: pnpm run build');
  process.exit(1);
}
// biome-ignore lint/suspicious/noUndeclaredEnvVars: optional knob of the benchmark
const IMAGE_DIR = process.env.BENCH_DIR ?? tmpdir();
const work = mkdtempSync(join(IMAGE_DIR, 'ckpt-bench-'));
const hog = join(work, 'memhog');
execFileSync('gcc', ['-O2', '-o', hog, join(root, 'bench/memhog.c')]);

// Extra flags for the measured Node, e.g. BENCH_NODE_FLAGS="--cpu-prof
// --cpu-prof-dir=/tmp/prof" to see where a command's time goes.
// biome-ignore lint/suspicious/noUndeclaredEnvVars: optional knob of the benchmark
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter((f) => f !== '');

function ckpt(args) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [...NODE_FLAGS, bin, ...args, '--json'], {
    encoding: 'utf8',
  });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`ckpt ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return { ms, json: JSON.parse(r.stdout) };
}

const nap = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Run `cmd` detached (not our child) and wait until it writes its pid to `pidfile`. */
function startDetached(cmd, pidfile, what) {
  rmSync(pidfile, { force: true });
  execFileSync('sh', ['-c', `setsid ${cmd} ${pidfile} </dev/null >/dev/null 2>&1 &`]);
  const end = Date.now() + 60_000;
  while (!existsSync(pidfile) || !readFileSync(pidfile, 'utf8').endsWith('\n')) {
    if (Date.now() > end) throw new Error(`${what} did not start`);
    nap(20);
  }
  return Number(readFileSync(pidfile, 'utf8'));
}

/** Wait until `pid` is gone (its pid free for the restart). */
function waitGone(pid) {
  while (existsSync(`/proc/${pid}`)) nap(5);
}

function startHog(mib) {
  // The hog writes its pid once its memory is touched.
  return startDetached(`${hog} ${mib}`, join(work, `hog-${mib}.pid`), 'memhog');
}

function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows = [];
for (const mib of SIZES) {
  const ck = [];
  const frozen = [];
  const rs = [];
  let bytes = 0;
  let rss = 0;
  // One unmeasured warm-up run: on a VM, memory the guest has never used
  // costs host page faults on first touch, which would swamp the figures.
  for (let i = -1; i < RUNS; i++) {
    const pid = startHog(mib);
    rss = rssBytes(pid);
    // A new image file each run, the last one removed first: its page
    // cache is freed and reused. (Writing over an image that is kept until
    // the new one is complete, as ckpt does, needs both in memory at once;
    // on this VM memory the guest has not touched yet costs host faults,
    // about 3 s per GiB, which would measure the VM, not ckpt.)
    const img = join(work, `img-${mib}`);
    rmSync(img, { force: true });
    const c = ckpt(['checkpoint', String(pid), '-o', img, '--kill']);
    bytes = statSync(img).size;
    // Wait until the killed process is gone and its pid free.
    waitGone(pid);
    const r = ckpt(['restart', img, '-d']);
    if (r.json.pid !== pid) throw new Error(`restored pid ${r.json.pid}, expected ${pid}`);
    process.kill(pid, 'SIGKILL');
    waitGone(pid);
    if (i < 0) continue;
    ck.push(c.ms);
    frozen.push(c.json.phasesMs.frozen ?? Number.NaN);
    rs.push(r.ms);
  }
  rows.push({
    size: `${mib} MiB`,
    checkpoint: `${(median(ck) / 1000).toFixed(3)} s`,
    frozen: `${(median(frozen) / 1000).toFixed(3)} s`,
    restart: `${(median(rs) / 1000).toFixed(3)} s`,
    image: `${(bytes / 2 ** 20).toFixed(1)} MiB`,
    rss: `${(rss / 2 ** 20).toFixed(1)} MiB`,
    'image/rss': `${((bytes / rss) * 100).toFixed(2)} %`,
    'ckpt MB/s': (rss / 1e6 / (median(ck) / 1000)).toFixed(0),
    'restart MB/s': (rss / 1e6 / (median(rs) / 1000)).toFixed(0),
  });
}
// A tree of 128 processes: checkpoint --kill and restart, total time.
const TREE = 128;
const forker = join(work, 'forker');
execFileSync('gcc', ['-O2', '-o', forker, join(root, 'bench/forker.c')]);
const startTree = () => startDetached(`${forker} ${TREE}`, join(work, 'tree.pid'), 'forker');
const treeTimes = [];
for (let i = -1; i < RUNS; i++) {
  const pid = startTree();
  const img = join(work, 'img-tree');
  rmSync(img, { force: true });
  const c = ckpt(['checkpoint', String(pid), '-o', img, '--kill']);
  if (c.json.pids.length !== TREE)
    throw new Error(`checkpointed ${c.json.pids.length} tasks, expected ${TREE}`);
  // Every pid free again: the children, orphaned by the kill, are reaped
  // by init, which may take a moment (restart would wait for them).
  for (const p of c.json.pids) waitGone(p);
  const r = ckpt(['restart', img, '-d']);
  if (r.json.pids.length !== TREE) throw new Error(`restored ${r.json.pids.length} tasks`);
  // Killing the whole restored tree: its session shares the root's pgid.
  for (const p of r.json.pids) process.kill(p, 'SIGKILL');
  for (const p of r.json.pids) waitGone(p);
  if (i >= 0) treeTimes.push({ ck: c.ms, rs: r.ms });
}
const treeCk = median(treeTimes.map((t) => t.ck));
const treeRs = median(treeTimes.map((t) => t.rs));

rmSync(work, { recursive: true, force: true });
// A yardstick of the machine's speed right now, single core: this VM's
// host load moves every figure above by ±30 %.
const yard = Buffer.alloc(64 << 20, 7);
const yt = process.hrtime.bigint();
for (let i = 0; i < 16; i++) crc32(yard);
const yardMs = Number(process.hrtime.bigint() - yt) / 1e6;
console.log(
  `ckpt benchmark — medians of ${RUNS} runs after a warm-up run; wall-clock of the CLI, Node start-up included; each image a new file in the page cache under ${IMAGE_DIR}, the last one removed first`,
);
if (rows.length > 0) console.table(rows);
console.log(
  `tree of ${TREE} processes: checkpoint ${(treeCk / 1000).toFixed(3)} s + restart ${(treeRs / 1000).toFixed(3)} s = ${((treeCk + treeRs) / 1000).toFixed(3)} s`,
);
console.log(
  `yardstick: zlib crc32 of 1 GiB on one core in ${yardMs.toFixed(0)} ms (186 ms on a quiet host)`,
);
