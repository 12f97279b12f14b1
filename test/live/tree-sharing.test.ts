/**
 * Sharing between the tasks of a tree: an open file inherited through
 * fork is one open file after restart (one offset), and a pipe inside the
 * tree keeps its buffered data, its size and both ends; a checkpoint that
 * leaves the tree running does not consume the pipe's data.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ckptOk, imagePath } from '../support/ckpt.js';
import { type FixtureHandle, type FixtureName, isAlive } from '../support/fixtures.js';
import { liveFixtures } from '../support/live.js';
import { waitFor } from '../support/procs.js';

const { start: startFx, leftovers } = liveFixtures();

function start(name: FixtureName): { f: FixtureHandle; child: number } {
  const f = startFx(name);
  const layout = fs.readFileSync(path.join(f.dir, 'layout'), 'utf8');
  const child = Number(/child (\d+)/.exec(layout)![1]);
  leftovers.push(f.pid, child);
  return { f, child };
}

function killAndRestart(f: FixtureHandle, child: number): void {
  const img = imagePath();
  ckptOk(['checkpoint', String(f.pid), '-o', img, '--kill']);
  // Killed, maybe still exiting (the CLI does not wait for that).
  waitFor('the tree killed', () => !isAlive(f.pid) && !isAlive(child));
  const out = ckptOk(['restart', img, '-d']);
  fs.rmSync(path.dirname(img), { recursive: true, force: true });
  expect(Number(out.trim())).toBe(f.pid);
  expect(isAlive(child)).toBe(true);
}

describe('sharing between the tasks of a tree', () => {
  it('an open file inherited through fork keeps one offset', () => {
    const { f, child } = start('tree_share');
    killAndRestart(f, child);
    f.go();
    expect(f.waitResult(30_000)).toMatch(/^PASS/);
  });

  it('a pipe keeps its buffered data, size and both ends', () => {
    const { f, child } = start('tree_share_pipe');
    killAndRestart(f, child);
    f.go();
    expect(f.waitResult(30_000)).toMatch(/^PASS/);
  });

  it('a checkpoint that leaves the tree running does not consume the pipe', () => {
    const { f } = start('tree_share_pipe');
    const img = imagePath();
    ckptOk(['checkpoint', String(f.pid), '-o', img, '--leave-running']);
    fs.rmSync(path.dirname(img), { recursive: true, force: true });
    f.go();
    expect(f.waitResult(30_000)).toMatch(/^PASS/);
  });
});
