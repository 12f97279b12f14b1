/**
 * cgroup membership: a process in its own cgroup (v1 `pids`, and the
 * cgroup2 hierarchy) comes back in it after checkpoint --kill and
 * restart, counted by its controllers again; a cgroup gone by the restart leaves it
 * in ckpt restart's, with a warning naming the cgroup. A task in a cgroup
 * namespace of its own comes back in one rooted where the first was.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ckpt, ckptOk, ROOT } from '../support/ckpt.js';
import { isAlive, procState } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireRoot } from '../support/prereq.js';
import { namespaceOf, waitFor } from '../support/procs.js';

const PIDS_ROOT = '/sys/fs/cgroup/pids';
const UNIFIED_ROOT = '/sys/fs/cgroup/unified';
const { leftovers, tmpImage } = cleanupAfterEach();
const made: string[] = [];

beforeAll(() => {
  requireRoot();
  for (const root of [PIDS_ROOT, UNIFIED_ROOT]) {
    if (!fs.existsSync(path.join(root, 'cgroup.procs')))
      throw new Error(`this test needs the cgroup hierarchy mounted at ${root}`);
  }
});

afterEach(() => {
  // A cgroup goes once empty: kill what is in it (this hook runs before
  // cleanupAfterEach's).
  for (const dir of made.splice(0).reverse()) {
    waitFor(`removing ${dir}`, () => {
      for (const p of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n')) {
        try {
          if (p) process.kill(Number(p), 'SIGKILL');
        } catch {
          // gone
        }
      }
      try {
        fs.rmdirSync(dir);
        return true;
      } catch {
        return !fs.existsSync(dir);
      }
    });
  }
});

function makeCgroup(root: string): string {
  const dir = path.join(root, `ckpt-test-${process.pid}-${made.length}`);
  fs.mkdirSync(dir);
  made.push(dir);
  return dir;
}

/** /proc/PID/cgroup path of `pid` in the hierarchy whose controllers are `controllers` ('' for cgroup2). */
function cgroupOf(pid: number, controllers: string): string | undefined {
  for (const line of fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8').split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (m && m[1] === controllers) return m[2];
  }
  return undefined;
}

/** A shell looping in `dirs`' cgroups. */
function startIn(dirs: string[]): number {
  const joins = dirs.map((d) => `echo $$ > ${d}/cgroup.procs`);
  const script = [...joins, 'while :; do sleep 0.1; done'].join('; ');
  const pid = Number(ckptOk(['run', '--', 'sh', '-c', script]).trim());
  leftovers.push(pid);
  waitFor('the shell to join its cgroups', () =>
    dirs.every((d) => fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8').includes(`${pid}\n`)),
  );
  return pid;
}

describe('cgroup membership', () => {
  it('a process comes back in its v1 pids and cgroup2 cgroups, and is counted there again', () => {
    const pidsCg = makeCgroup(PIDS_ROOT);
    const unifiedCg = makeCgroup(UNIFIED_ROOT);
    const pid = startIn([pidsCg, unifiedCg]);
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the original to go', () => procState(pid) === undefined);
    const r = ckpt(['restart', img, '-d']);
    expect(r.code, r.stderr).toBe(0);
    expect(Number(r.stdout.trim())).toBe(pid);
    expect(r.stderr).not.toMatch(/cgroup/);
    expect(cgroupOf(pid, 'pids')).toBe(`/${path.basename(pidsCg)}`);
    expect(cgroupOf(pid, '')).toBe(`/${path.basename(unifiedCg)}`);
    // Its limits apply to it again: the pids controller counts it there.
    expect(isAlive(pid)).toBe(true);
    const inCg = fs.readFileSync(path.join(pidsCg, 'cgroup.procs'), 'utf8').split('\n');
    expect(inCg).toContain(String(pid));
    expect(Number(fs.readFileSync(path.join(pidsCg, 'pids.current'), 'utf8'))).toBeGreaterThan(0);
  });

  it('a cgroup gone by the restart: restored in restart’s own, with a warning naming it', () => {
    const pidsCg = makeCgroup(PIDS_ROOT);
    const pid = startIn([pidsCg]);
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the original to go', () => procState(pid) === undefined);
    waitFor(`removing ${pidsCg}`, () => {
      try {
        fs.rmdirSync(pidsCg);
        return true;
      } catch {
        return false;
      }
    });
    made.pop();
    const r = ckpt(['restart', img, '-d']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(`its cgroup pids:/${path.basename(pidsCg)} does not exist here`);
    expect(isAlive(pid)).toBe(true);
    expect(cgroupOf(pid, 'pids')).toBe(cgroupOf(process.pid, 'pids'));
  });

  it('a cgroup outside ckpt restart’s own: the process stays in restart’s, with a warning', () => {
    const pid = startIn([]);
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the original to go', () => procState(pid) === undefined);
    // The restart runs confined to a child of the pids root the process was in.
    const confined = makeCgroup(PIDS_ROOT);
    const bin = path.join(ROOT, 'apps/cli/dist/bin.js');
    const r = spawnSync(
      'sh',
      [
        '-c',
        `echo $$ > ${confined}/cgroup.procs && exec "${process.execPath}" "${bin}" restart "${img}" -d`,
      ],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain(`outside ckpt restart's own (pids:/${path.basename(confined)})`);
    expect(isAlive(pid)).toBe(true);
    expect(cgroupOf(pid, 'pids')).toBe(`/${path.basename(confined)}`);
  });
});

describe('cgroup namespaces', () => {
  it('a task in its own cgroup namespace comes back in one rooted where it was, seeing the same cgroups', () => {
    const pidsCg = makeCgroup(PIDS_ROOT);
    const unifiedCg = makeCgroup(UNIFIED_ROOT);
    for (const d of [pidsCg, unifiedCg]) {
      fs.mkdirSync(path.join(d, 'sub'));
      made.push(path.join(d, 'sub')); // removed before its parent
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-cgns-'));
    const view = path.join(dir, 'view');
    // Joins the cgroups, makes its namespace there (unshare -C), then moves
    // one level down: inside, it sees itself in /sub. It keeps writing
    // what it sees.
    const inner = [
      `echo $$ > ${pidsCg}/sub/cgroup.procs`,
      `echo $$ > ${unifiedCg}/sub/cgroup.procs`,
      `while :; do cat /proc/self/cgroup > ${view}.tmp; mv ${view}.tmp ${view}; sleep 0.1; done`,
    ].join('; ');
    const script = `echo $$ > ${pidsCg}/cgroup.procs; echo $$ > ${unifiedCg}/cgroup.procs; exec unshare -C sh -c '${inner}'`;
    const pid = Number(ckptOk(['run', '--', 'sh', '-c', script]).trim());
    leftovers.push(pid);
    try {
      waitFor('the shell to see its cgroups', () => fs.existsSync(view));
      const seen = fs.readFileSync(view, 'utf8');
      expect(seen).toContain('pids:/sub\n');
      expect(seen).toContain('0::/sub\n');
      const full = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');
      expect(namespaceOf(pid, 'cgroup')).not.toBe(namespaceOf('self', 'cgroup'));

      const img = tmpImage();
      ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
      waitFor('the original to go', () => procState(pid) === undefined);
      fs.rmSync(view);
      const r = ckpt(['restart', img, '-d']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
      expect(fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8')).toBe(full);
      expect(namespaceOf(pid, 'cgroup')).not.toBe(namespaceOf('self', 'cgroup'));
      waitFor('the shell to see its cgroups again', () => fs.existsSync(view));
      expect(fs.readFileSync(view, 'utf8')).toBe(seen);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
