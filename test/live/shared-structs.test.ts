/**
 * Task structures a child shares with its parent without being a thread
 * (clone(2) flags): an fd table (CLONE_FILES) and cwd/root/umask (CLONE_FS)
 * stay shared through checkpoint --kill and restart — what the child opens
 * or where it goes, the parent sees. An address space or signal handlers
 * (CLONE_VM, CLONE_SIGHAND) are refused up front, naming both pids, and
 * both keep running; so is the child alone (its parent outside the tree),
 * and a vfork child that never starts a program: alone it is refused, and
 * its parent, which waits for it, is refused at once rather than after a
 * freeze timeout.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KCMP, kcmp } from '@ckpt/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ckpt, ckptOk } from '../support/ckpt.js';
import { fixtureCommand, isAlive, procState } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireCommand, requireRoot } from '../support/prereq.js';
import { waitFor } from '../support/procs.js';

// The child, on SIGUSR1, opens argv[2] and moves to argv[3]: with a shared
// fd table and fs, the parent then holds that file and sits in that directory.
const SOURCE = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
static char stack[65536];
static char **args;
static volatile sig_atomic_t asked;
static void on_usr1(int s) { (void)s; asked = 1; }
static int child(void *arg) {
  (void)arg;
  sigset_t none;
  sigemptyset(&none);
  for (;;) {
    while (!asked) sigsuspend(&none);
    asked = 0;
    if (open(args[2], O_RDWR | O_CREAT, 0600) < 0 || chdir(args[3]) < 0) return 1;
  }
}
int main(int argc, char **argv) {
  (void)argc;
  args = argv;
  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  sigprocmask(SIG_BLOCK, &usr1, 0);
  signal(SIGUSR1, on_usr1);
  int pid = clone(child, stack + sizeof stack, atoi(argv[1]) | SIGCHLD, NULL);
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
const { leftovers } = cleanupAfterEach();

beforeAll(() => {
  requireRoot();
  requireCommand('gcc');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-shared-structs-'));
  fs.writeFileSync(path.join(dir, 'sharer.c'), SOURCE);
  bin = path.join(dir, 'sharer');
  execFileSync('gcc', ['-O1', '-o', bin, path.join(dir, 'sharer.c')]);
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Start the sharer with `ckpt run`; returns its pid, its child's, and its cwd. */
function startSharer(flags: number, marker: string, target: string) {
  const out = path.join(dir, `out-${flags}`);
  const parent = Number(
    ckptOk(['run', '--stdout', out, '--', bin, String(flags), marker, target]).trim(),
  );
  leftovers.push(parent);
  waitFor('the sharer', () => /^\d+\n/.test(fs.readFileSync(out, 'utf8')));
  const child = Number(fs.readFileSync(out, 'utf8').trim());
  leftovers.push(child);
  return { parent, child, cwd: fs.readlinkSync(`/proc/${parent}/cwd`) };
}

function holds(pid: number, file: string): boolean {
  return fs.readdirSync(`/proc/${pid}/fd`).some((fd) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === file;
    } catch {
      return false;
    }
  });
}

describe('task structures shared without threads', () => {
  it('an fd table and cwd shared with the parent stay shared after restart', () => {
    const marker = path.join(dir, 'marker');
    const target = fs.mkdtempSync(path.join(dir, 'cwd-'));
    const { parent, child, cwd } = startSharer(CLONE_FILES | CLONE_FS, marker, target);
    expect(kcmp(parent, child, KCMP.FILES)).toBe(0);
    const img = path.join(dir, 'img');
    ckptOk(['checkpoint', String(parent), '-o', img, '--kill']);
    waitFor('the sharer to die', () => procState(parent) === undefined);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(parent);
    expect(kcmp(parent, child, KCMP.FILES)).toBe(0);
    expect(kcmp(parent, child, KCMP.FS)).toBe(0);
    expect(fs.readlinkSync(`/proc/${parent}/cwd`)).toBe(cwd);

    process.kill(child, 'SIGUSR1');
    waitFor('the parent to see what the child did', () => holds(parent, marker));
    waitFor('the parent to sit where the child went', () => {
      return fs.readlinkSync(`/proc/${parent}/cwd`) === target;
    });
  });

  it('an fd table alone: cwd stays the task’s own', () => {
    const marker = path.join(dir, 'marker2');
    const target = fs.mkdtempSync(path.join(dir, 'cwd-'));
    const { parent, child, cwd } = startSharer(CLONE_FILES, marker, target);
    const img = path.join(dir, 'img2');
    ckptOk(['checkpoint', String(parent), '-o', img, '--kill']);
    waitFor('the sharer to die', () => procState(parent) === undefined);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(parent);
    expect(kcmp(parent, child, KCMP.FILES)).toBe(0);
    expect(kcmp(parent, child, KCMP.FS)).not.toBe(0);
    process.kill(child, 'SIGUSR1');
    waitFor('the parent to see the child’s file', () => holds(parent, marker));
    waitFor('the child to move', () => fs.readlinkSync(`/proc/${child}/cwd`) === target);
    expect(fs.readlinkSync(`/proc/${parent}/cwd`)).toBe(cwd);
  });

  it('refuses an address space and signal handlers shared with the parent', () => {
    const { parent, child } = startSharer(CLONE_VM | CLONE_SIGHAND, '/dev/null', '/');
    const r = ckpt(['checkpoint', String(parent), '-o', path.join(dir, 'img3'), '--kill']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(
      new RegExp(`pid ${child} shares its address space with its parent ${parent} \\(CLONE_VM`),
    );
    expect(isAlive(parent)).toBe(true);
    expect(isAlive(child)).toBe(true);
    // The child alone: its address space is its parent's, outside the tree.
    const alone = ckpt(['checkpoint', String(child), '-o', path.join(dir, 'img4'), '--kill']);
    expect(alone.code).not.toBe(0);
    expect(alone.stderr).toContain(
      `pid ${child} shares its address space with its parent ${parent}, which is outside the tree`,
    );
    expect(isAlive(child)).toBe(true);
  });

  it('refuses a vfork child before its exec, and its waiting parent at once', () => {
    const out = path.join(dir, 'vfork-out');
    const parent = Number(
      ckptOk(['run', '--stdout', out, '--', ...fixtureCommand('vforker')]).trim(),
    );
    leftovers.push(parent);
    waitFor('the vfork child', () => /^\d+ \d+\n/.test(fs.readFileSync(out, 'utf8')));
    const child = Number(fs.readFileSync(out, 'utf8').trim().split(' ')[1]);
    leftovers.push(child);
    const alone = ckpt(['checkpoint', String(child), '-o', path.join(dir, 'img5'), '--kill']);
    expect(alone.code).not.toBe(0);
    expect(alone.stderr).toContain(
      `pid ${child} shares its address space with its parent ${parent}, which is outside the tree (a vfork child before its exec`,
    );
    const t0 = Date.now();
    const whole = ckpt(['checkpoint', String(parent), '-o', path.join(dir, 'img6'), '--kill']);
    expect(whole.code).not.toBe(0);
    expect(whole.stderr).toContain(
      `cannot freeze pid ${parent}: it waits for its vfork child to start a program or exit`,
    );
    // Not the 10 s freeze timeout.
    expect(Date.now() - t0).toBeLessThan(8000);
    expect(isAlive(parent)).toBe(true);
    expect(isAlive(child)).toBe(true);
  });
});
