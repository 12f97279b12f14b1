/**
 * Process groups whose leader has exited, in a subtree of the host's
 * namespaces: a job-control shell's pipeline whose first process is gone
 * leaves the other two in a group nobody leads. Restart re-creates the
 * group through a placeholder leader that ends before anything runs; the
 * shell still waits for its job and sees it end. (Sessions whose leader is
 * gone are in container-workload.test.ts: their members are init's.) A
 * subtree whose own session's leader has exited (`sh -c 'cmd &'`, a
 * double-forked daemon) comes back as the leader of a new session, with
 * its pid or (--no-pids) a new one, and counts on.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { CKPT_BIN, ckpt, ckptOk } from '../support/ckpt.js';
import { procState } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireCommand, requireRoot } from '../support/prereq.js';
import { childrenOf, statIds, waitFor } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

beforeAll(() => {
  requireRoot();
  requireCommand('bash');
});

/** How long each wait here may take (longer than waitFor's default). */
const WAIT_MS = 10_000;

interface Ids {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  cmd: string;
}

function ids(pid: number): Ids {
  const { ppid, pgid, sid } = statIds(pid);
  const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  return { pid, ppid, pgid, sid, cmd };
}

/** Live children of `pid` (by /proc), sorted by pid. */
function children(pid: number): Ids[] {
  const out: Ids[] = [];
  for (const child of childrenOf(pid)) {
    try {
      out.push(ids(child));
    } catch {
      // gone meanwhile
    }
  }
  return out.sort((a, b) => a.pid - b.pid);
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
  waitFor(
    'the pipeline to lose its leader',
    () => {
      members = children(shell).filter((c) => c.cmd.startsWith('sleep 100'));
      return members.length === 2 && children(shell).length === 2;
    },
    WAIT_MS,
  );
  leftovers.push(...members.map((m) => m.pid));
  return { shell, members };
}

describe('a process group whose leader has exited', () => {
  it('is re-created with its id; the shell still waits for the job', () => {
    const dir = tmpDir('ckpt-sessions-');
    const { shell, members } = startShell(dir);
    const pgid = members[0]!.pgid;
    expect(members[1]!.pgid).toBe(pgid);
    // The leader is gone (once the shell has reaped it).
    waitFor('the leader reaped', () => procState(pgid) === undefined, WAIT_MS);
    expect(pgid).not.toBe(ids(shell).pgid);

    const img = tmpImage();
    ckptOk(['checkpoint', String(shell), '-o', img, '--kill']);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(shell);

    const now = children(shell);
    expect(now).toEqual(members);
    expect(procState(pgid)).toBeUndefined(); // the placeholder is gone, collected
    expect(ids(shell).sid).toBe(shell);

    // The job ends when its members are killed: the shell's wait returns.
    for (const m of members) process.kill(m.pid, 'SIGKILL');
    waitFor('the shell to see its job end', () => fs.existsSync(path.join(dir, 'done')), WAIT_MS);
  });

  it('with --no-pids the members share a new group led by nobody', () => {
    const dir = tmpDir('ckpt-sessions-');
    const { shell, members } = startShell(dir);
    const img = tmpImage();
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

describe('a subtree whose session leader has exited', () => {
  for (const noPids of [false, true]) {
    it(`comes back as the leader of a new session and counts on${noPids ? ' (--no-pids)' : ''}`, () => {
      const out = path.join(tmpDir('ckpt-orphan-'), 'out');
      // sh starts the counter in the background and exits: the counter's
      // session and group are led by nobody.
      const counter = `i=0; while :; do i=$((i+1)); echo $i >> ${out}; sleep 0.05; done`;
      const sh = Number(ckptOk(['run', '--', 'sh', '-c', `bash -c '${counter}' & exit 0`]).trim());
      waitFor('sh to exit', () => procState(sh) === undefined || procState(sh) === 'Z', WAIT_MS);
      let pid = 0;
      waitFor(
        'the counter',
        () => {
          pid = fs.existsSync(out) ? (statIdsOfCounter(sh) ?? 0) : 0;
          return pid !== 0;
        },
        WAIT_MS,
      );
      leftovers.push(pid);
      expect(statIds(pid)).toMatchObject({ sid: sh, pgid: sh });
      const img = tmpImage();
      ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
      waitFor('the counter gone', () => procState(pid) === undefined, WAIT_MS);
      const lines = () => fs.readFileSync(out, 'utf8').trim().split('\n').map(Number);
      const atKill = lines().length;
      const r = ckpt(['restart', img, '-d', ...(noPids ? ['--no-pids'] : [])]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(
        `the leader of its session ${sh} has exited; it is restored as the leader of a new session`,
      );
      const restored = Number(r.stdout.trim());
      leftovers.push(restored);
      if (!noPids) expect(restored).toBe(pid);
      expect(statIds(restored)).toMatchObject({ sid: restored, pgid: restored });
      waitFor('counting on', () => lines().length >= atKill + 5, WAIT_MS);
      expect(lines()).toEqual(lines().map((_, i) => i + 1));
    });
  }
});

describe('a subtree whose process group is gone but whose session is not', () => {
  it('comes back as the leader of a new group, in the session', () => {
    const dir = tmpDir('ckpt-lost-group-');
    // In a session of its own whose leader stays: a job-control shell runs
    // `( sleep & )`, so the subshell leading sleep's group exits, the shell
    // too; then sleep (alone: no group member left to take the group over)
    // is checkpointed and restarted from within the same session, as a
    // user would from their terminal.
    fs.writeFileSync(
      path.join(dir, 'job.sh'),
      `set -m\n( sleep 1000 & echo $! > ${dir}/pid )\nsleep 0.3\n`,
    );
    const ckptCmd = `"${process.execPath}" "${CKPT_BIN}"`;
    const session = [
      `bash ${dir}/job.sh`,
      `pid=$(cat ${dir}/pid)`,
      `ps -o pgid= -p $pid > ${dir}/pgid-before`,
      `${ckptCmd} checkpoint $pid -o ${dir}/img --kill`,
      'while [ -d /proc/$pid ]; do sleep 0.05; done',
      `${ckptCmd} restart ${dir}/img -d > ${dir}/restored 2> ${dir}/err`,
      'exec sleep 1000',
    ].join('; ');
    const leader = spawn('setsid', ['bash', '-c', session], { stdio: 'ignore' });
    leftovers.push(leader.pid!);
    const restored = path.join(dir, 'restored');
    waitFor(
      'the restart',
      () => fs.existsSync(restored) && fs.readFileSync(restored, 'utf8') !== '',
      30_000,
    );
    const pid = Number(fs.readFileSync(path.join(dir, 'pid'), 'utf8'));
    leftovers.push(pid);
    const lost = Number(fs.readFileSync(path.join(dir, 'pgid-before'), 'utf8'));
    expect(lost).not.toBe(pid);
    expect(Number(fs.readFileSync(restored, 'utf8'))).toBe(pid);
    expect(fs.readFileSync(path.join(dir, 'err'), 'utf8')).toContain(
      `pid ${pid}: its process group ${lost} no longer exists; it leads a new group of its own`,
    );
    expect(statIds(pid)).toMatchObject({ pgid: pid, sid: statIds(leader.pid!).sid });
    expect(procState(pid)).toMatch(/^[RS]$/);
  });
});

/** The pid of the `bash -c` counter sh started (a session member named by sid). */
function statIdsOfCounter(sid: number): number | undefined {
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
      if (cmd.startsWith('bash\0-c\0i=0;') && statIds(Number(d)).sid === sid) return Number(d);
    } catch {
      // gone
    }
  }
  return undefined;
}
