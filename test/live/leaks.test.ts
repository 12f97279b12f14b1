/**
 * Leak detection for whole-container checkpoints: a container whose
 * objects nobody outside references checkpoints and restarts; an outside
 * process in its uts namespace, holding its open file description (via
 * pidfd_getfd) or its FIFO fails the checkpoint with ELEAK naming that pid
 * and the object, and the container keeps running untouched. A subtree
 * with the same sharing only gets a warning.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { checkLeaks, grabFd } from '@ckpt/core';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ckpt, ckptOk } from '../support/ckpt.js';
import { procState } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireCommand, requireRoot } from '../support/prereq.js';
import { tracerPid, waitFor } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();
const children: ChildProcess[] = [];

beforeAll(() => {
  requireRoot();
  for (const cmd of ['unshare', 'setsid', 'nsenter', 'mkfifo']) requireCommand(cmd);
});

afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
});

function fdTarget(pid: number, fd: number): string | undefined {
  try {
    return fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
  } catch {
    return undefined;
  }
}

/** `ckpt run [--container] -- sh -c SCRIPT`; waits until fd 3 is open. */
function run(script: string, container = true): number {
  const pid = Number(
    ckptOk(['run', ...(container ? ['--container'] : []), '--', 'sh', '-c', script]).trim(),
  );
  leftovers.push(pid);
  waitFor('the workload to open fd 3', () => fdTarget(pid, 3) !== undefined);
  return pid;
}

/** An outside process; its pid, once `ready()` holds. */
function outside(argv: string[], ready: () => boolean): number {
  const c = spawn(argv[0]!, argv.slice(1), { stdio: 'ignore' });
  children.push(c);
  waitFor(`${argv.join(' ')} to start`, ready);
  return c.pid!;
}

/** The checkpoint failed with ELEAK, and the tree was let go unharmed. */
function expectLeak(pid: number, pattern: RegExp, outsidePid: number): void {
  const img = tmpImage();
  const r = ckpt(['checkpoint', String(pid), '-o', img, '--kill', '--container']);
  expect(r.code).not.toBe(0);
  expect(r.stderr).toMatch(new RegExp(`pid ${outsidePid} outside the container also holds`));
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr).toMatch(/--subtree/);
  // Released unharmed: alive, not traced, its fd still open.
  expect(procState(pid)).toBeDefined();
  expect(procState(pid)).not.toBe('Z');
  expect(tracerPid(pid)).toBe(0);
  expect(fdTarget(pid, 3)).toBeDefined();
}

describe('leak detection for container checkpoints', () => {
  it('checkpoints and restarts a container that shares nothing with the outside', () => {
    const d = tmpDir('ckpt-leaks-');
    const file = path.join(d, 'f');
    const pid = run(`exec 3>${file}; sleep 1000 & exec sleep 1000`);
    // Another open() of the same file is a separate open file description: no leak.
    const other = outside(['sh', '-c', `exec 3<${file}; exec sleep 1000`], () => true);
    waitFor('the outside reader', () => fdTarget(other, 3) === file);
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill', '--container']);
    waitFor('the container to die', () => procState(pid) === undefined);
    const restored = Number(ckptOk(['restart', img, '-d']).trim());
    leftovers.push(restored);
    expect(restored).toBe(pid);
    expect(fdTarget(restored, 3)).toBe(file);
  });

  it('fails with ELEAK for an outside process in the container uts namespace', () => {
    const d = tmpDir('ckpt-leaks-');
    const pid = run(`exec 3>${path.join(d, 'f')}; exec sleep 1000`);
    const uts = fs.readlinkSync(`/proc/${pid}/ns/uts`);
    const c = spawn('nsenter', ['-t', String(pid), '-u', 'sleep', '1000'], { stdio: 'ignore' });
    children.push(c);
    waitFor('nsenter to enter the uts namespace', () => {
      try {
        return fs.readlinkSync(`/proc/${c.pid}/ns/uts`) === uts;
      } catch {
        return false;
      }
    });
    expectLeak(pid, /uts namespace/, c.pid!);
    // Once it is gone, the same container checkpoints.
    c.kill('SIGKILL');
    // A zombie (not reaped yet: this loop holds the event loop) is in no namespace.
    waitFor('the outside process to go', () => [undefined, 'Z'].includes(procState(c.pid!)));
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--container']);
  });

  it('fails with ELEAK for an outside holder of the same open file description', () => {
    const d = tmpDir('ckpt-leaks-');
    const file = path.join(d, 'f');
    const pid = run(`exec 3>${file}; exec sleep 1000`);
    // This test process (not ckpt) takes the container's own description.
    const fd = grabFd(pid, 3);
    try {
      expectLeak(pid, new RegExp(`the open file ${file}`), process.pid);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('fails with ELEAK for a FIFO an outside process has open', () => {
    const d = tmpDir('ckpt-leaks-');
    const fifo = path.join(d, 'fifo');
    spawnSyncOk('mkfifo', [fifo]);
    const holder = outside(['sh', '-c', `exec 3<>${fifo}; exec sleep 1000`], () => true);
    waitFor('the outside FIFO holder', () => fdTarget(holder, 3) === fifo);
    const pid = run(`exec 3<>${fifo}; exec sleep 1000`);
    expectLeak(pid, /FIFO/, holder);
  });

  it('only warns for a subtree that shares an object with the outside', () => {
    const d = tmpDir('ckpt-leaks-');
    const fifo = path.join(d, 'fifo');
    spawnSyncOk('mkfifo', [fifo]);
    const holder = outside(['sh', '-c', `exec 3<>${fifo}; exec sleep 1000`], () => true);
    waitFor('the outside FIFO holder', () => fdTarget(holder, 3) === fifo);
    const pid = run(`exec 3<>${fifo}; exec sleep 1000`, false);
    const warnings: string[] = [];
    const log = { debug() {}, info() {}, warn: (m: string) => warnings.push(m), error() {} };
    checkLeaks([pid], false, log);
    expect(warnings.join('\n')).toMatch(
      new RegExp(`pid ${holder} outside the checkpointed tree also holds the FIFO ${fifo}`),
    );
    // The CLI checkpoint of the subtree succeeds, and says why it warns:
    // on stderr, and in --json's `warnings`.
    const img = tmpImage();
    const r = ckpt(['checkpoint', String(pid), '-o', img, '--json']);
    expect(r.code).toBe(0);
    const said = new RegExp(`pid ${holder} outside the checkpointed tree also holds the FIFO`);
    expect(r.stderr).toMatch(new RegExp(`ckpt: warn: .*${said.source}`));
    const warned = (JSON.parse(r.stdout) as { warnings: string[] }).warnings;
    // Once: the reverse check after saving reports only references taken meanwhile.
    expect(warned.filter((w) => said.test(w))).toHaveLength(1);
    expect(procState(pid)).toBeDefined();
  });

  it('takes an open /dev/null shared with the outside for no leak, an open file for one', () => {
    const d = tmpDir('ckpt-leaks-');
    const file = path.join(d, 'data');
    fs.writeFileSync(file, 'x');
    // The child holds its parent's open file descriptions (fd 3, fd 4);
    // the parent stays outside the checkpointed subtree.
    const script = `exec 3</dev/null 4<${file}; sleep 1000 & echo $! > ${d}/child; wait`;
    const parent = outside(['sh', '-c', script], () => fs.existsSync(path.join(d, 'child')));
    waitFor('the child', () => /^\d+\n/.test(fs.readFileSync(path.join(d, 'child'), 'utf8')));
    const child = Number(fs.readFileSync(path.join(d, 'child'), 'utf8'));
    leftovers.push(child);
    const warnings: string[] = [];
    const log = { debug() {}, info() {}, warn: (m: string) => warnings.push(m), error() {} };
    checkLeaks([child], false, log);
    expect(warnings.join('\n')).toMatch(
      new RegExp(`pid ${parent} .*also holds the open file ${file}`),
    );
    expect(warnings.join('\n')).not.toMatch(/\/dev\/null/);
  });
});

function spawnSyncOk(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed`);
}
