/**
 * A real, busy program nobody wrote for ckpt: Node.js itself (the runtime
 * running these tests), with its threads (V8's and libuv's), epoll and
 * eventfds, pipes, JIT code and timers. A script counts into a file on a
 * timer; after checkpoint --kill and restart -d it counts on, with no
 * number missing or repeated.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ckptOk } from '../support/ckpt.js';
import { isAlive } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { waitFor } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

function numbers(file: string): number[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number);
}

describe('node', () => {
  it('a Node.js timer loop continues after checkpoint --kill and restart', () => {
    const out = path.join(tmpDir('ckpt-node-'), 'out');
    const script = `let i = 0; const fs = require('fs'); setInterval(() => fs.appendFileSync(${JSON.stringify(out)}, ++i + '\\n'), 50);`;
    const pid = Number(ckptOk(['run', '--', process.execPath, '-e', script]).trim());
    leftovers.push(pid);
    waitFor('counting', () => fs.existsSync(out) && numbers(out).length >= 5, 20_000);
    expect(fs.readdirSync(`/proc/${pid}/task`).length).toBeGreaterThan(1);
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the original gone', () => !isAlive(pid));
    const atKill = numbers(out).length;
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    waitFor('counting on', () => numbers(out).length >= atKill + 10, 20_000);
    const seen = numbers(out);
    expect(seen).toEqual(seen.map((_, i) => i + 1));
  });
});
