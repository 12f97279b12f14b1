/**
 * A process tree in the host's namespaces through checkpoint --kill and
 * restart -d: pids, parents, process groups, sessions and a zombie come
 * back (checked from outside here, and from inside by the fixture), and a
 * restart that fails midway leaves none of the tree running.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ckpt, ckptOk, imagePath } from '../support/ckpt.js';
import { type FixtureHandle, isAlive, procState } from '../support/fixtures.js';
import { liveFixtures } from '../support/live.js';
import { statIds, waitFor } from '../support/procs.js';

const ROLES = ['parent', 'a', 'g', 'b'] as const;
type Role = (typeof ROLES)[number];
interface Ids {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
}

const { start: startFx, leftovers } = liveFixtures();

function startTree(): { f: FixtureHandle; ids: Record<Role, Ids>; zombie: number } {
  const f = startFx('tree_basic');
  const read = (name: string) => fs.readFileSync(path.join(f.dir, name), 'utf8').trim();
  const ids = Object.fromEntries(
    ROLES.map((role) => {
      const [pid, ppid, pgid, sid] = read(role).split(' ').map(Number);
      return [role, { pid: pid!, ppid: ppid!, pgid: pgid!, sid: sid! }];
    }),
  ) as Record<Role, Ids>;
  const zombie = Number(read('zombie'));
  leftovers.push(...ROLES.map((r) => ids[r].pid));
  return { f, ids, zombie };
}

/** Start a sleeping process that gets exactly `pid` (through ns_last_pid). */
function occupy(pid: number): number {
  for (let attempt = 0; attempt < 50; attempt++) {
    fs.writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    child.on('error', () => {});
    if (child.pid === pid) return pid;
    child.kill('SIGKILL');
  }
  throw new Error(`could not start a process with pid ${pid}`);
}

describe('a process tree in the host namespaces', () => {
  it('comes back with its pids, parents, groups, sessions and zombie', () => {
    const { f, ids, zombie } = startTree();
    expect(procState(zombie)).toBe('Z');
    const img = imagePath();
    ckptOk(['checkpoint', String(f.pid), '-o', img, '--kill']);
    // Killed, maybe still exiting (the CLI does not wait for that).
    waitFor('the tree killed', () => ROLES.every((r) => !isAlive(ids[r].pid)));
    const out = ckptOk(['restart', img, '-d']);
    fs.rmSync(path.dirname(img), { recursive: true, force: true });
    expect(Number(out.trim())).toBe(f.pid);

    for (const r of ROLES) {
      expect(isAlive(ids[r].pid), r).toBe(true);
      const now = statIds(ids[r].pid);
      expect({ pgid: now.pgid, sid: now.sid }, r).toEqual({ pgid: ids[r].pgid, sid: ids[r].sid });
      // The root's parent was the launcher; it is now whoever adopted it.
      if (r !== 'parent') expect(now.ppid, r).toBe(ids[r].ppid);
    }
    expect(ids.b.pgid).toBe(ids.b.pid);
    expect(ids.parent.sid).toBe(ids.parent.pid);
    expect(procState(zombie)).toBe('Z');
    expect(statIds(zombie).ppid).toBe(ids.parent.pid);

    f.go();
    // Inside: ids read again by every process, no spurious SIGCHLD, the
    // zombie reaped with status 7, every child exited 0.
    expect(f.waitResult(30_000)).toMatch(/^PASS/);
  });

  it('a checkpoint that leaves the tree running lets every task go unharmed', () => {
    const { f, ids, zombie } = startTree();
    const img = imagePath();
    ckptOk(['checkpoint', String(f.pid), '-o', img]);
    const info = ckptOk(['info', img, '--tree']);
    fs.rmSync(path.dirname(img), { recursive: true, force: true });
    for (const r of ROLES) {
      expect(isAlive(ids[r].pid), r).toBe(true);
      expect(info).toContain(String(ids[r].pid));
    }
    expect(info).toMatch(new RegExp(`${zombie}.*zombie`));
    f.go();
    expect(f.waitResult(30_000)).toMatch(/^PASS/);
  });

  // g is created alone; a with its sibling, the zombie, in one batch of clones.
  for (const role of ['g', 'a'] as const) {
    it(`a pid taken before restart (${role}) fails it with EBUSY and leaves nothing running`, () => {
      const { f, ids, zombie } = startTree();
      const img = imagePath();
      ckptOk(['checkpoint', String(f.pid), '-o', img, '--kill']);
      const taken = ids[role].pid;
      const others = [ids.parent.pid, ids.a.pid, ids.b.pid, ids.g.pid, zombie].filter(
        (p) => p !== taken,
      );
      // --kill does not wait for the tree to die: let it, so that whatever
      // is alive after the restart is the restart's.
      waitFor('the checkpointed tree to go', () =>
        [taken, ...others].every((p) => procState(p) === undefined),
      );
      leftovers.push(occupy(taken));
      const r = ckpt(['restart', img, '-d']);
      fs.rmSync(path.dirname(img), { recursive: true, force: true });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(new RegExp(`pid ${taken} is already in use`));
      for (const pid of others) expect(isAlive(pid), `pid ${pid}`).toBe(false);
      expect(isAlive(taken)).toBe(true); // the other process, untouched
    });
  }
});
