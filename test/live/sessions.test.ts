/**
 * Process groups whose leader has exited, in a subtree of the host's
 * namespaces: a job-control shell's pipeline whose first process is gone
 * leaves the other two in a group nobody leads. Restart re-creates the
 * group through a placeholder leader that ends before anything runs; the
 * shell still waits for its job and sees it end. (Sessions whose leader is
 * gone are in container-workload.test.ts: their members are init's.)
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ckptOk, imagePath } from '../support/ckpt.js';
import { procState, sleepSync } from '../support/fixtures.js';
import { requireCommand, requireRoot } from '../support/prereq.js';

const leftovers: number[] = [];
const dirs: string[] = [];

beforeAll(() => {
  requireRoot();
  requireCommand('bash');
});

afterEach(() => {
  for (const pid of leftovers.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

interface Ids {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  cmd: string;
}

function ids(pid: number): Ids {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const [, ppid, pgid, sid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  return { pid, ppid: Number(ppid), pgid: Number(pgid), sid: Number(sid), cmd };
}

/** Live children of `pid`, by /proc. */
function children(pid: number): Ids[] {
  const out: Ids[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const p = ids(Number(name));
      if (p.ppid === pid && procState(p.pid) !== 'Z') out.push(p);
    } catch {
      // gone meanwhile
    }
  }
  return out.sort((a, b) => a.pid - b.pid);
}

function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): void {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    sleepSync(20);
  }
}

/** A shell whose pipeline job has lost its leader; returns the shell and the two members. */
function startShell(dir: string): { shell: number; members: Ids[] } {
  const script = `set -m
(sleep 0.1) | sleep 1000 | sleep 1001 &
wait
echo "job ended" > ${dir}/done
sleep 1000`;
  const shell = Number(ckptOk(['run', '--', 'bash', '-c', script]).trim());
  leftovers.push(shell);
  let members: Ids[] = [];
  waitFor('the pipeline to lose its leader', () => {
    members = children(shell).filter((c) => c.cmd.startsWith('sleep 100'));
    return members.length === 2 && children(shell).length === 2;
  });
  leftovers.push(...members.map((m) => m.pid));
  return { shell, members };
}

describe('a process group whose leader has exited', () => {
  it('is re-created with its id; the shell still waits for the job', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-sessions-'));
    dirs.push(dir);
    const { shell, members } = startShell(dir);
    const pgid = members[0]!.pgid;
    expect(members[1]!.pgid).toBe(pgid);
    expect(procState(pgid)).toBeUndefined(); // the leader is gone
    expect(pgid).not.toBe(ids(shell).pgid);

    const img = imagePath();
    dirs.push(path.dirname(img));
    ckptOk(['checkpoint', String(shell), '-o', img, '--kill']);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(shell);

    const now = children(shell);
    expect(now).toEqual(members);
    expect(procState(pgid)).toBeUndefined(); // the placeholder is gone, collected
    expect(ids(shell).sid).toBe(shell);

    // The job ends when its members are killed: the shell's wait returns.
    for (const m of members) process.kill(m.pid, 'SIGKILL');
    waitFor('the shell to see its job end', () => fs.existsSync(path.join(dir, 'done')));
  });

  it('with --no-pids the members share a new group led by nobody', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-sessions-'));
    dirs.push(dir);
    const { shell, members } = startShell(dir);
    const img = imagePath();
    dirs.push(path.dirname(img));
    ckptOk(['checkpoint', String(shell), '-o', img, '--kill']);
    const restored = Number(ckptOk(['restart', img, '-d', '--no-pids']).trim());
    leftovers.push(restored);
    const now = children(restored);
    leftovers.push(...now.map((c) => c.pid));
    expect(now.map((c) => c.cmd)).toEqual(members.map((m) => m.cmd));
    expect(now[0]!.pgid).toBe(now[1]!.pgid);
    expect(now.map((c) => c.pid)).not.toContain(now[0]!.pgid);
    expect(now[0]!.pgid).not.toBe(restored);
    expect(procState(now[0]!.pgid)).toBeUndefined();
    expect(now[0]!.sid).toBe(restored);
  });
});
