/**
 * Running the real `ckpt` CLI from tests, as a user would: the built
 * apps/cli/dist/bin.js (`pnpm test` builds before testing).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CKPT_BIN = path.join(ROOT, 'apps/cli/dist/bin.js');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run `ckpt ARGS` and wait for it. */
export function ckpt(
  args: string[],
  opts: { input?: Buffer; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): RunResult {
  if (!fs.existsSync(CKPT_BIN))
    throw new Error(`${CKPT_BIN} is missing: run 'pnpm run build' first`);
  const r = spawnSync(process.execPath, [CKPT_BIN, ...args], {
    input: opts.input,
    env: opts.env,
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 120_000,
    // spawnSync's default (1 MiB) kills the child with SIGTERM when its
    // output is larger, as `info --json` of a big image is.
    maxBuffer: 1 << 30,
  });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** `ckpt ARGS`, which must succeed; returns stdout. */
export function ckptOk(args: string[]): string {
  const r = ckpt(args);
  if (r.code !== 0) {
    throw new Error(`ckpt ${args.join(' ')} exited ${r.code ?? r.signal}:\n${r.stderr}`);
  }
  return r.stdout;
}

/** A fresh temporary image path. */
export function imagePath(name = 'image'): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-img-')), `${name}.img`);
}

/** Checkpoint `pid` with --kill, then restart detached; returns the restored pid. */
export function checkpointKillRestart(pid: number, extraRestart: string[] = []): number {
  const img = imagePath();
  try {
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    const out = ckptOk(['restart', img, '-d', ...extraRestart]);
    return Number(out.trim());
  } finally {
    fs.rmSync(path.dirname(img), { recursive: true, force: true });
  }
}
