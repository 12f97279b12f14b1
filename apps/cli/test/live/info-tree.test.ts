/**
 * `ckpt info --tree` on images of real processes started with `ckpt run`
 * and checkpointed with --leave-running.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ckpt, ckptOk, imagePath, ROOT } from '../../../../test/support/ckpt.js';
import { requireRoot } from '../../../../test/support/prereq.js';

const started: number[] = [];
const images: string[] = [];

beforeAll(() => {
  requireRoot();
});

afterEach(() => {
  for (const pid of started.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  for (const img of images.splice(0))
    fs.rmSync(path.dirname(img), { recursive: true, force: true });
});

/** Start `argv` with `ckpt run`, checkpoint it leaving it running; returns pid and image. */
function checkpointed(runArgs: string[]): { pid: number; img: string } {
  const pid = Number(ckptOk(['run', ...runArgs]).trim());
  started.push(pid);
  const img = imagePath('tree');
  images.push(img);
  ckptOk(['checkpoint', String(pid), '-o', img, '--leave-running']);
  return { pid, img };
}

describe('ckpt info --tree', () => {
  it('shows a checkpointed process with its pid, ids, state and comm', () => {
    const { pid, img } = checkpointed(['--', 'sleep', '100']);
    expect(fs.existsSync(`/proc/${pid}`)).toBe(true);
    const lines = ckptOk(['info', '--tree', img]).trimEnd().split('\n');
    expect(lines[0]).toMatch(/^\s+PID\s+PPID\s+PGID\s+SID NLWP STATE\s+COMMAND$/);
    expect(lines).toHaveLength(2);
    const [p, , pgid, sid, nlwp, state, comm] = lines[1]!.trim().split(/\s+/);
    expect([Number(p), Number(pgid), Number(sid), Number(nlwp), state, comm]).toEqual([
      pid,
      pid,
      pid,
      1,
      'running',
      'sleep',
    ]);
  });

  it('--json gives the nodes, and - reads standard input', () => {
    const { pid, img } = checkpointed(['--container', '--', 'sleep', '100']);
    const r = ckpt(['info', '--tree', '--json', '-'], { input: fs.readFileSync(img) });
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.ok).toBe(true);
    expect(doc.tree).toEqual([
      expect.objectContaining({
        pid,
        tgid: pid,
        pgid: pid,
        sid: pid,
        nsPids: [pid, 1],
        comm: 'sleep',
        depth: 0,
      }),
    ]);
  });

  it('an image without a tree record is one clear error', () => {
    const img = imagePath('sample');
    images.push(img);
    execFileSync(process.execPath, [path.join(ROOT, 'scripts/make-sample-image.mjs'), img]);
    const r = ckpt(['info', '--tree', img]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^ckpt: error: .* has no process tree \(no tree record, type 101\)\n$/,
    );
  });
});

describe('output into a slow pipe', () => {
  it('ckpt info --json is complete when its reader is slower than it (the CLI waits for output to drain)', () => {
    // 64 MiB of pages: their chunk records make ~0.5 MB of JSON, far more
    // than a pipe holds (64 KiB), so the CLI has output queued when done.
    // The pages are touched in place (no temporary copy) and a file says
    // when they all are, so the image's size does not depend on timing.
    const ready = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-hog-')), 'ready');
    const hog = [
      'import sys, time',
      'b = bytearray(64 << 20)',
      'for i in range(0, len(b), 4096): b[i] = 120',
      'open(sys.argv[1], "w").close()',
      'time.sleep(100)',
    ].join('\n');
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', hog, ready]).trim());
    started.push(pid);
    const until = Date.now() + 30_000;
    while (!fs.existsSync(ready) && Date.now() < until) execFileSync('sleep', ['0.05']);
    fs.rmSync(path.dirname(ready), { recursive: true, force: true });
    const img = imagePath('tree');
    images.push(img);
    ckptOk(['checkpoint', String(pid), '-o', img, '--leave-running']);
    const direct = ckptOk(['info', '--json', img]);
    expect(direct.length).toBeGreaterThan(256 * 1024);
    const bin = path.join(ROOT, 'apps/cli/dist/bin.js');
    const viaPipe = execFileSync(
      'sh',
      ['-c', `"${process.execPath}" "${bin}" info --json "${img}" | (sleep 0.5; cat)`],
      { maxBuffer: 64 << 20, encoding: 'utf8' },
    );
    expect(viaPipe.length).toBe(direct.length);
    expect(() => JSON.parse(viaPipe)).not.toThrow();
  });
});
