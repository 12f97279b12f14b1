/**
 * cgroup membership: a process in its own cgroup (v1 `pids`, and the
 * cgroup2 hierarchy) comes back in it after checkpoint --kill and
 * restart, counted by its controllers again; a cgroup gone by the restart leaves it
 * in ckpt restart's, with a warning naming the cgroup.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ckpt, ckptOk, ROOT } from '../support/ckpt.js';
import { isAlive, procState } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireRoot } from '../support/prereq.js';
import { waitFor } from '../support/procs.js';

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
    expect(r.stderr).toContain(
      `was in cgroup pids:/${path.basename(pidsCg)}, which does not exist here`,
    );
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
