/**
 * `ckpt run` as a user runs it: a plain command in its own session, and a
 * container whose init is pid 1 of fresh namespaces with its own /proc.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readCmdline, readStat, readStatus } from '@ckpt/core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ckpt, ckptOk } from '../../../../test/support/ckpt.js';
import { requireRoot } from '../../../../test/support/prereq.js';

const started: number[] = [];
let dir: string;

beforeAll(() => {
  requireRoot();
});

afterEach(() => {
  // Killing a container's init kills everything in its pid namespace.
  for (const pid of started.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-run-'));
  return dir;
}

/** `ckpt run ARGS`; returns the reported pid, remembered for cleanup. */
function run(args: string[]): number {
  const pid = Number(ckptOk(['run', ...args]).trim());
  expect(Number.isInteger(pid) && pid > 0).toBe(true);
  started.push(pid);
  return pid;
}

function waitFor<T>(what: string, fn: () => T | undefined, timeoutMs = 5000): T {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  }
}

const nsLink = (pid: number | 'self', ns: string) => fs.readlinkSync(`/proc/${pid}/ns/${ns}`);

describe('ckpt run', () => {
  it('starts a command in its own session and leaves it running', () => {
    const pid = run(['--', 'sleep', '100']);
    expect(readCmdline(pid)).toEqual(['sleep', '100']);
    const stat = readStat(pid);
    expect(stat.session).toBe(pid);
    expect(stat.pgrp).toBe(pid);
    // ckpt has exited: the workload does not depend on it.
    expect(stat.ppid).not.toBe(process.pid);
    expect(nsLink(pid, 'pid')).toBe(nsLink('self', 'pid'));
  });

  it('--json, --pidfile and --stdout', () => {
    const d = tempDir();
    const pidfile = path.join(d, 'pid');
    const out = path.join(d, 'out');
    const r = ckpt([
      'run',
      '--json',
      '--pidfile',
      pidfile,
      '--stdout',
      out,
      '--',
      'sh',
      '-c',
      'echo hello; exec sleep 100',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    started.push(doc.pid);
    expect(doc).toEqual({ ok: true, pid: doc.pid, container: false, nsPids: [doc.pid] });
    expect(fs.readFileSync(pidfile, 'utf8')).toBe(`${doc.pid}\n`);
    expect(waitFor('output', () => fs.readFileSync(out, 'utf8') || undefined)).toBe('hello\n');
  });

  it('--container: the command is pid 1 of new pid, uts, ipc and mount namespaces', () => {
    const d = tempDir();
    const pidfile = path.join(d, 'pid');
    const r = ckpt(['run', '--container', '--json', '--pidfile', pidfile, '--', 'sleep', '100']);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    const pid: number = doc.pid;
    started.push(pid);
    expect(doc).toEqual({ ok: true, pid, container: true, nsPids: [pid, 1] });
    expect(fs.readFileSync(pidfile, 'utf8')).toBe(`${pid}\n`);

    expect(readStatus(pid).nsPid).toEqual([pid, 1]);
    expect(readCmdline(pid)).toEqual(['sleep', '100']);
    for (const ns of ['pid', 'uts', 'ipc', 'mnt']) {
      expect(nsLink(pid, ns), ns).not.toBe(nsLink('self', ns));
    }
    // Its own session and group, and no process outside the tree left in
    // its namespaces (unshare is gone), so a whole-container checkpoint
    // has nothing to leak.
    const stat = readStat(pid);
    expect([stat.session, stat.pgrp]).toEqual([pid, pid]);
    const insiders = fs
      .readdirSync('/proc')
      .filter((n) => /^\d+$/.test(n) && Number(n) !== pid)
      .filter((n) => {
        try {
          return nsLink(Number(n), 'uts') === nsLink(pid, 'uts');
        } catch {
          return false;
        }
      });
    expect(insiders).toEqual([]);
  });

  it('--container --net: a network namespace of its own too, with only lo, already up when the command starts', () => {
    const d = tempDir();
    const out = path.join(d, 'dev');
    // What the command itself sees first thing: the interfaces and lo's addresses.
    const script = `cat /proc/net/dev /proc/net/if_inet6 > ${out}.tmp; mv ${out}.tmp ${out}; exec sleep 100`;
    const pid = run(['--container', '--net', '--', 'sh', '-c', script]);
    const seen = waitFor('the listing', () =>
      fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : undefined,
    );
    expect(nsLink(pid, 'net')).not.toBe(nsLink('self', 'net'));
    const names = seen
      .split('\n')
      .filter((l) => /^\s*[\w.-]+:/.test(l))
      .map((l) => l.split(':')[0]!.trim());
    expect(names).toEqual(['lo']);
    // ::1 on lo: the kernel gives it once lo is up.
    expect(seen).toMatch(/^0{31}1 .* lo$/m);
  });

  it('--net or --time without --container is a usage error', () => {
    for (const flag of ['--net', '--time']) {
      const r = ckpt(['run', flag, '--', 'sleep', '1']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`${flag}) is for a container: add --container`);
    }
  });

  it('--container: /proc inside shows only the container', () => {
    const d = tempDir();
    const count = path.join(d, 'count');
    // The shell writes the file's name once the count is complete.
    const script = `ls /proc | grep -c '^[0-9]' > ${count}.tmp; mv ${count}.tmp ${count}; exec sleep 100`;
    const pid = run(['--container', '--', 'sh', '-c', script]);
    const n = waitFor('the count', () =>
      fs.existsSync(count) ? Number(fs.readFileSync(count, 'utf8')) : undefined,
    );
    // sh (pid 1), and ls and grep while the pipeline runs; the host has many more.
    expect(n).toBeGreaterThanOrEqual(1);
    expect(n).toBeLessThanOrEqual(4);
    const hostCount = fs.readdirSync('/proc').filter((x) => /^\d+$/.test(x)).length;
    expect(hostCount).toBeGreaterThan(n);
    expect(readStatus(pid).nsPid.at(-1)).toBe(1);
  });

  it('killing the init ends the container', () => {
    const pid = run(['--container', '--', 'sh', '-c', 'sleep 100 & sleep 100 & wait']);
    const kids = waitFor('the children', () => {
      const k = fs
        .readdirSync('/proc')
        .filter((n) => /^\d+$/.test(n))
        .map(Number)
        .filter((p) => {
          try {
            return readStat(p).ppid === pid;
          } catch {
            return false;
          }
        });
      return k.length === 2 ? k : undefined;
    });
    process.kill(pid, 'SIGKILL');
    waitFor('the container to end', () =>
      [pid, ...kids].every((p) => !fs.existsSync(`/proc/${p}`) || readStat(p).state === 'Z')
        ? true
        : undefined,
    );
  });

  it('reports a missing command on one line', () => {
    for (const args of [
      ['--', 'no-such-command-ckpt'],
      ['--container', '--', 'no-such-command-ckpt'],
    ]) {
      const r = ckpt(['run', ...args]);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(
        'ckpt: error: command not found or not executable: no-such-command-ckpt\n',
      );
    }
  });

  it('--container: a command that cannot start is one error naming its stderr file', () => {
    const d = tempDir();
    const err = path.join(d, 'err');
    // Executable, so ckpt run accepts it, but its interpreter does not
    // exist: the exec inside the container fails before the command runs.
    const cmd = path.join(d, 'broken');
    fs.writeFileSync(cmd, '#!/nonexistent/interpreter\n', { mode: 0o755 });
    const r = ckpt(['run', '--container', '--stderr', err, '--', cmd]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `^ckpt: error: the container ended before ckpt saw its command run: unshare exited with code \\d+ \\(its stderr is in ${err}\\) \\(pid \\d+\\)\n$`,
      ),
    );
    expect(fs.readFileSync(err, 'utf8')).toContain(cmd);
  });

  it('without a command it is a usage error', () => {
    const r = ckpt(['run']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('usage: ckpt run');
  });
});
