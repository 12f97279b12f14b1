/**
 * A child that shares its fd table, cwd or signal handlers with its parent
 * without being a thread (clone(2) with CLONE_FILES, CLONE_FS or
 * CLONE_SIGHAND|CLONE_VM) cannot be restored with that sharing yet: the
 * checkpoint refuses it up front, naming both pids and what they share,
 * and leaves both running.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ckpt } from '../support/ckpt.js';
import { isAlive, sleepSync } from '../support/fixtures.js';
import { requireCommand, requireRoot } from '../support/prereq.js';

const SOURCE = `
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static char stack[65536];
static int child(void *arg) { (void)arg; for (;;) pause(); return 0; }
int main(int argc, char **argv) {
  int flags = atoi(argv[1]);
  int pid = clone(child, stack + sizeof stack, flags | SIGCHLD, NULL);
  if (pid < 0) { perror("clone"); return 1; }
  printf("%d\\n", pid);
  fflush(stdout);
  for (;;) pause();
}
`;

const CLONE_VM = 0x100;
const CLONE_FS = 0x200;
const CLONE_FILES = 0x400;
const CLONE_SIGHAND = 0x800;

let dir = '';
let bin = '';
const started: number[] = [];

beforeAll(() => {
  requireRoot();
  requireCommand('gcc');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-shared-structs-'));
  fs.writeFileSync(path.join(dir, 'sharer.c'), SOURCE);
  bin = path.join(dir, 'sharer');
  execFileSync('gcc', ['-O1', '-o', bin, path.join(dir, 'sharer.c')]);
});

afterAll(() => {
  for (const pid of started) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Start the sharer detached; returns its pid and its child's. */
function startSharer(flags: number): { parent: number; child: number } {
  const out = path.join(dir, `out-${flags}`);
  const p = spawn(bin, [String(flags)], {
    detached: true,
    stdio: ['ignore', fs.openSync(out, 'w'), 'ignore'],
  });
  p.unref();
  started.push(p.pid!);
  const end = Date.now() + 5000;
  while (!/^\d+\n/.test(fs.readFileSync(out, 'utf8'))) {
    if (Date.now() > end) throw new Error('the sharer did not start');
    sleepSync(10);
  }
  const child = Number(fs.readFileSync(out, 'utf8').trim());
  started.push(child);
  return { parent: p.pid!, child };
}

describe('task structures shared without threads', () => {
  for (const [flags, what] of [
    [CLONE_FILES, /shares its fd table with its parent \d+ \(CLONE_FILES/],
    [CLONE_FS, /shares its cwd, root and umask with its parent \d+ \(CLONE_FS/],
    [CLONE_VM | CLONE_SIGHAND, /shares its address space with its parent \d+ \(CLONE_VM/],
  ] as const) {
    it(`refuses ${what.source.split('(')[1]}`, () => {
      const { parent, child } = startSharer(flags);
      const r = ckpt(['checkpoint', String(parent), '-o', path.join(dir, 'img'), '--kill']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(new RegExp(`pid ${child} ${what.source}`));
      expect(isAlive(parent)).toBe(true);
      expect(isAlive(child)).toBe(true);
    });
  }
});
