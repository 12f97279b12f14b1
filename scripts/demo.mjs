#!/usr/bin/env node
// The main job of the README: write a sample image and print it with
// `ckpt info`. (The live checkpoint/restart demo replaces this once
// `ckpt checkpoint` and `ckpt restart` land.)
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'ckpt-demo-'));
const image = join(dir, 'sample.img');
const root = new URL('..', import.meta.url).pathname;
execFileSync(process.execPath, [join(root, 'scripts/make-sample-image.mjs'), image], {
  stdio: 'inherit',
});
console.log(`\n$ ckpt info ${image}`);
execFileSync(process.execPath, [join(root, 'apps/cli/dist/bin.js'), 'info', image], {
  stdio: 'inherit',
});
