/**
 * Helpers for the kernel-layer live tests: C programs compiled at test
 * time, and bookkeeping so every process a test starts is killed.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type FrozenTask,
  processExists,
  reap,
  sendSignal,
  spawnProcess,
  unfreezeTask,
} from '../../../src/kernel/index.js';
import { readStat } from '../../../src/proc/index.js';

/** Compile C `source` (cached by content) and return the binary's path. */
export function compileC(name: string, source: string, flags: string[] = []): string {
  const dir = join(tmpdir(), 'ckpt-kernel-tests');
  mkdirSync(dir, { recursive: true });
  const hash = createHash('sha256')
    .update(source)
    .update(flags.join(' '))
    .digest('hex')
    .slice(0, 12);
  const bin = join(dir, `${name}-${hash}`);
  if (!existsSync(bin)) {
    const src = `${bin}.c`;
    writeFileSync(src, source);
    execFileSync('gcc', ['-O1', '-o', `${bin}.tmp`, src, ...flags]);
    execFileSync('mv', [`${bin}.tmp`, bin]);
  }
  return bin;
}

/**
 * A C program that counts, writing each value to the file argv[1] and
 * sleeping `periodMs` between values: a target whose progress a test can
 * watch.
 */
export function counterSource(periodMs: number): string {
  return `
#include <stdio.h>
#include <time.h>
int main(int argc, char **argv) {
  for (unsigned long n = 0;; n++) {
    FILE *f = fopen(argv[1], "w");
    fprintf(f, "%lu\\n", n);
    fclose(f);
    struct timespec ts = {0, ${periodMs * 1_000_000}};
    nanosleep(&ts, NULL);
  }
}
`;
}

let tmpCount = 0;

/** A fresh path (nothing there yet) for a file a test program writes. */
export function freshPath(name: string): string {
  tmpCount += 1;
  return join(tmpdir(), `ckpt-${name}-${process.pid}-${tmpCount}`);
}

const started = new Set<number>();

/** Remember `pid` so {@link killStarted} kills it. Returns `pid`. */
export function track(pid: number): number {
  started.add(pid);
  return pid;
}

/** SIGKILL every tracked process that still exists, and reap our children. */
export function killStarted(): void {
  for (const pid of started) {
    if (processExists(pid)) {
      try {
        sendSignal(pid, 9);
      } catch {
        // Already gone.
      }
    }
    reap(pid);
  }
  started.clear();
}

/** A tracked `sleep 1000`, once it sleeps: a target doing nothing of its own. */
export async function startSleeper(): Promise<number> {
  const pid = track(spawnProcess(['/bin/sleep', '1000']));
  await waitUntil(() => readStat(pid).state === 'S');
  return pid;
}

/**
 * Let `frozen` go and return its state 30 ms later: 'S' for a sleeper that
 * went back to sleep unharmed.
 */
export async function stateAfterRelease(frozen: FrozenTask): Promise<string> {
  unfreezeTask(frozen);
  await sleep(30);
  return readStat(frozen.pid).state;
}

/** Sleep without blocking the event loop. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Poll `cond` every 10 ms until it is true or `timeoutMs` passes. */
export async function waitUntil(cond: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(10);
  }
  return cond();
}

/**
 * Transpile core's kernel layer (with the proc readers and errors.ts it uses) to plain JavaScript in a
 * temporary directory, so a separate `node` process can run it, e.g. as a
 * tracer that a test kills. Returns the path of the kernel index.js.
 */
export async function transpileKernelForNode(): Promise<string> {
  const ts = (await import('typescript')).default;
  const src = fileURLToPath(new URL('../../../src/', import.meta.url));
  const out = mkdtempSync(join(tmpdir(), 'ckpt-kernel-js-'));
  const dirs = ['kernel', 'proc'];
  const files = [
    'errors.ts',
    ...dirs.flatMap((d) => readdirSync(join(src, d)).map((f) => `${d}/${f}`)),
  ];
  for (const d of dirs) mkdirSync(join(out, d));
  for (const f of files.filter((f) => f.endsWith('.ts'))) {
    const js = ts.transpileModule(readFileSync(join(src, f), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    }).outputText;
    writeFileSync(join(out, f.replace(/\.ts$/, '.js')), js);
  }
  writeFileSync(join(out, 'package.json'), '{"type":"module"}');
  // koffi's entry point is at the root of its package.
  const koffiDir = dirname(createRequire(import.meta.url).resolve('koffi'));
  mkdirSync(join(out, 'node_modules'));
  symlinkSync(koffiDir, join(out, 'node_modules', 'koffi'));
  return join(out, 'kernel', 'index.js');
}
