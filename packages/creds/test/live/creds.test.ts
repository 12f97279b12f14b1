/**
 * Credentials through the real CLI: `ckpt checkpoint PID -o IMG --kill`,
 * then `ckpt restart IMG -d`. Checked from outside (/proc/PID/status of the
 * restored process) and from inside (the program's own self-check after go).
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CKPT_BIN, ckptOk, imagePath } from '../../../../test/support/ckpt.js';
import {
  compileAll,
  compileFixture,
  FIXTURES_DIR,
  type FixtureHandle,
  isAlive,
  killAndReap,
  sleepSync,
  startFixture,
} from '../../../../test/support/fixtures.js';
import { requireCommand, requireRoot } from '../../../../test/support/prereq.js';
import { compileC } from '../../../core/test/live/kernel/support.js';

const started: { pid: number; dir: string }[] = [];
const images: string[] = [];

beforeAll(() => {
  requireRoot();
  requireCommand('setpriv');
  compileAll();
});

afterEach(() => {
  for (const p of started.splice(0)) {
    if (isAlive(p.pid)) killAndReap(p.pid);
    fs.rmSync(p.dir, { recursive: true, force: true });
  }
  for (const img of images.splice(0))
    fs.rmSync(path.dirname(img), { recursive: true, force: true });
});

function start(name: string): FixtureHandle {
  const f = startFixture(name);
  started.push(f);
  return f;
}

/**
 * Start packages/creds/test/live/NAME.c (which follows the protocol of
 * test/fixtures/fixture.h) through the harness's launcher, so that it is
 * not Node's child; returns its pid and work directory once it is ready.
 */
function startProgram(name: string): { pid: number; dir: string } {
  const src = fs.readFileSync(new URL(`./${name}.c`, import.meta.url), 'utf8');
  const bin = compileC(name, src, ['-Wall', '-I', FIXTURES_DIR]);
  const dir = fs.mkdtempSync(path.join('/tmp', `ckpt-creds-${name}-`));
  const child = spawn(compileFixture('launch'), [dir, bin, dir], {
    stdio: 'ignore',
    detached: true,
  });
  child.unref();
  const end = Date.now() + 20_000;
  const read = (f: string) => fs.readFileSync(path.join(dir, f), 'utf8');
  while (!fs.existsSync(path.join(dir, 'ready'))) {
    if (fs.existsSync(path.join(dir, 'exit')) || Date.now() > end) {
      throw new Error(
        `${name} did not get ready: ${fs.existsSync(path.join(dir, 'stderr')) ? read('stderr') : ''}`,
      );
    }
    sleepSync(5);
  }
  const p = { pid: Number(read('ready').trim()), dir };
  started.push(p);
  return p;
}

function waitResult(dir: string, pid: number): string {
  const file = path.join(dir, 'result');
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    if (fs.existsSync(file)) {
      const r = fs.readFileSync(file, 'utf8');
      if (r.endsWith('\n')) return r.trim();
    } else if (!isAlive(pid)) {
      sleepSync(100);
      if (!fs.existsSync(file)) throw new Error(`pid ${pid} died without a result`);
    }
    sleepSync(5);
  }
  throw new Error(`pid ${pid} wrote no result`);
}

/** The credential lines of /proc/PID/status. */
function credLines(pid: number): string[] {
  return fs
    .readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .filter((l) => /^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):/.test(l));
}

/** Checkpoint with --kill into an image any user can read; returns its path. */
function checkpointKill(pid: number): string {
  const img = imagePath();
  images.push(img);
  ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
  fs.chmodSync(path.dirname(img), 0o755);
  fs.chmodSync(img, 0o644);
  return img;
}

function restartDetached(img: string): number {
  return Number(ckptOk(['restart', img, '-d']).trim());
}

// The self-checks of rlimits_creds that concern credentials (the rest,
// rlimits, comm and personality, belong to core's task phase).
const CRED_CHECKS =
  /^(uids|gids|fsuid\/fsgid|supplementary groups|caps |bounding set|ambient set|dumpable|keepcaps|securebits|no_new_privs)/;

describe('credentials survive checkpoint and restart', () => {
  it('rlimits_creds: the same ids, groups, capabilities and no_new_privs, and no credential check fails', () => {
    const f = start('rlimits_creds');
    const before = credLines(f.pid);
    expect(before.join('\n')).toMatch(/^Uid:\t1000\t1001\t1002\t1001$/m);
    const pid = restartDetached(checkpointKill(f.pid));
    expect(pid).toBe(f.pid);
    expect(credLines(pid)).toEqual(before);
    f.go();
    const result = f.waitResult(60_000);
    // While other phases are incomplete the result may FAIL for rlimits,
    // comm or personality: only credential items count here.
    const items = result.startsWith('FAIL: ') ? result.slice(6).split('; ') : [];
    expect(result).toMatch(/^(PASS|FAIL: )/);
    expect(items.filter((i) => CRED_CHECKS.test(i))).toEqual([]);
  });

  it('creds_edge: 3000 groups, inheritable outside bounding, fs ids, locked securebits, dumpable 0', () => {
    const p = startProgram('creds_edge');
    const before = credLines(p.pid);
    expect(before.join('\n')).toMatch(/^Uid:\t1000\t1001\t1002\t1000$/m);
    expect(
      before
        .find((l) => l.startsWith('Groups:'))!
        .trim()
        .split(/\s+/),
    ).toHaveLength(3001);
    const pid = restartDetached(checkpointKill(p.pid));
    expect(credLines(pid)).toEqual(before);
    fs.writeFileSync(path.join(p.dir, 'go'), '');
    expect(waitResult(p.dir, pid)).toBe('PASS');
  });
});

describe('restart never grants more than its caller holds', () => {
  // Enough privilege to recreate a process with its pid, memory and files,
  // but neither CAP_SETUID nor CAP_SETGID nor CAP_SETPCAP.
  const CAPS = '+checkpoint_restore,+sys_ptrace,+dac_override';

  function restartAsUser(img: string, ids: string[]) {
    return spawnSync(
      'setpriv',
      [
        ...ids,
        `--inh-caps=${CAPS}`,
        `--ambient-caps=${CAPS}`,
        process.execPath,
        CKPT_BIN,
        'restart',
        img,
        '-d',
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
  }

  const cases = [
    {
      ids: ['--reuid=1000', '--regid=1000', '--clear-groups'],
      error: 'cannot restore gid 0: ckpt restart runs as uid 1000 without CAP_SETGID',
    },
    {
      ids: ['--reuid=1000', '--regid=0', '--keep-groups'],
      error: 'cannot restore uid 0: ckpt restart runs as uid 1000 without CAP_SETUID',
    },
  ];
  for (const c of cases) {
    it(`a root process restarted under setpriv ${c.ids.join(' ')}: refused, nothing left`, () => {
      const f = start('pauser');
      const img = checkpointKill(f.pid);
      expect(isAlive(f.pid)).toBe(false);
      const r = restartAsUser(img, c.ids);
      expect(r.status).toBe(1);
      expect(r.stderr.trim()).toBe(`ckpt: error: pid ${f.pid}: ${c.error}`);
      expect(r.stdout).toBe('');
      // The engine killed the task it created; give init a moment to reap it.
      const end = Date.now() + 2000;
      while (isAlive(f.pid) && Date.now() < end) sleepSync(10);
      expect(isAlive(f.pid)).toBe(false);
    });
  }
});
