/**
 * A container (`ckpt run --container`: a shell as the init of fresh pid,
 * uts, ipc and mount namespaces, with a custom hostname, a child and a loop
 * writing to a file) through checkpoint --kill and restart -d: it comes back
 * as init of a new pid namespace with the same pids at both levels, its
 * hostname, its own /proc, and keeps running; the host's hostname is not
 * touched. Its own mounts: container-mounts.test.ts.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ckpt, ckptOk } from '../support/ckpt.js';
import { isAlive, procState } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireCommand, requireRoot } from '../support/prereq.js';
import { childrenOf, namespaceOf, nsenter, nsPids, waitFor } from '../support/procs.js';

const HOSTNAME = 'ckpt-test-host';
/** Container inits to kill after each test (killing an init ends its namespace). */
const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

beforeAll(() => {
  requireRoot();
  for (const cmd of ['unshare', 'setsid', 'nsenter', 'hostname', 'ps']) requireCommand(cmd);
});

function lines(file: string): number {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
}

/** Start the container; returns its init's host pid, once the loop runs. */
function startContainer(dir: string): { init: number; out: string; sleeper: number } {
  const out = path.join(dir, 'out');
  const script = [
    `hostname ${HOSTNAME}`,
    // Pids used and gone: a restart must not give them out again at once.
    'for i in $(seq 60); do /bin/true; done',
    'sleep 1000 &',
    'i=0',
    `while :; do i=$((i+1)); echo $i >> ${out}; sleep 0.2; done`,
  ].join('\n');
  const init = Number(ckptOk(['run', '--container', '--', 'sh', '-c', script]).trim());
  leftovers.push(init);
  waitFor('the loop to write', () => lines(out) >= 2);
  let sleeper = 0;
  waitFor('the background sleep', () => {
    for (const c of childrenOf(init)) {
      if (fs.readFileSync(`/proc/${c}/cmdline`, 'utf8').startsWith('sleep\x001000')) sleeper = c;
    }
    return sleeper !== 0;
  });
  return { init, out, sleeper };
}

describe('container checkpoint and restart', () => {
  it('restores a container init in new namespaces with its pids, hostname and /proc', () => {
    const hostHostname = os.hostname();
    const dir = tmpDir('ckpt-container-');
    const { init, out, sleeper } = startContainer(dir);
    expect(nsPids(init)).toEqual([init, 1]);
    expect(nsenter(init, ['-u'], ['hostname']).trim()).toBe(HOSTNAME);
    const sleeperNs = nsPids(sleeper);
    const lastPid = () =>
      Number(nsenter(init, ['-p', '-m'], ['cat', '/proc/sys/kernel/ns_last_pid']).trim());
    const lastBefore = lastPid();

    const img = tmpImage();
    ckptOk(['checkpoint', String(init), '-o', img, '--kill', '--container']);
    waitFor('the container to die', () => procState(init) === undefined);
    const info = ckptOk(['info', img, '--json']);
    expect(info).toContain('uts_ns');

    const restored = Number(ckptOk(['restart', img, '-d']).trim());
    expect(restored).toBe(init);

    // Init of a new pid namespace, with the same pids at both levels (nsfs
    // inodes are reused once a namespace is freed: comparing with the old one
    // proves nothing).
    expect(nsPids(restored)).toEqual([init, 1]);
    expect(namespaceOf(restored, 'pid')).not.toBe(namespaceOf('self', 'pid'));
    for (const t of ['uts', 'ipc', 'mnt'])
      expect(namespaceOf(restored, t)).not.toBe(namespaceOf('self', t));
    expect(isAlive(sleeper)).toBe(true);
    expect(nsPids(sleeper)).toEqual(sleeperNs);
    expect(namespaceOf(sleeper, 'uts')).toBe(namespaceOf(restored, 'uts'));

    // The hostname is the container's; the host's is untouched.
    expect(nsenter(restored, ['-u'], ['hostname']).trim()).toBe(HOSTNAME);
    expect(os.hostname()).toBe(hostHostname);

    // The loop continues.
    const n = lines(out);
    waitFor('the loop to continue', () => lines(out) >= n + 2);

    // ps inside shows only the container: its init as 1, the sleeper by its inner pid.
    const ps = nsenter(restored, ['-p', '-m'], ['ps', '-e', '-o', 'pid=,comm='])
      .trim()
      .split('\n')
      .map((l) => l.trim().split(/\s+/));
    const byPid = new Map(ps.map(([pid, comm]) => [Number(pid), comm]));
    expect(byPid.get(1)).toBe('sh');
    expect(byPid.get(sleeperNs[1]!)).toBe('sleep');
    for (const comm of byPid.values()) expect(['sh', 'sleep', 'ps']).toContain(comm);
    const procPids = nsenter(restored, ['-p', '-m'], ['ls', '/proc'])
      .split('\n')
      .filter((n) => /^\d+$/.test(n))
      .map(Number);
    expect(procPids).toContain(1);
    expect(procPids.length).toBeLessThan(10);
    // Processes started inside after the restart get pids above those the
    // container had given (its pid counter is restored), not low ones again.
    expect(lastPid()).toBeGreaterThan(lastBefore);
  });

  it('with --no-pids keeps the pids inside its new pid namespace (the shell finds its jobs), new ones outside', () => {
    const dir = tmpDir('ckpt-container-');
    const { init, out, sleeper } = startContainer(dir);
    const sleeperInner = nsPids(sleeper)[1]!;
    const img = tmpImage();
    ckptOk(['checkpoint', String(init), '-o', img, '--leave-running', '--container']);
    // The original keeps its pids and runs on beside the copy.
    const copy = Number(ckptOk(['restart', img, '-d', '--no-pids']).trim());
    leftovers.push(copy);
    expect(copy).not.toBe(init);
    expect(nsPids(copy)).toEqual([copy, 1]);
    const copySleeper = childrenOf(copy).find((c) =>
      fs.readFileSync(`/proc/${c}/cmdline`, 'utf8').startsWith('sleep\x001000'),
    );
    expect(copySleeper).toBeDefined();
    expect(copySleeper).not.toBe(sleeper);
    expect(nsPids(copySleeper!)).toEqual([copySleeper, sleeperInner]);
    expect(isAlive(sleeper)).toBe(true);
    // The original stops; the copy's loop goes on writing to the same file.
    process.kill(init, 'SIGKILL');
    waitFor('the original to die', () => procState(init) === undefined);
    const n = lines(out);
    waitFor('the copy to go on', () => lines(out) >= n + 3);
  });

  it('refuses --container for a process that is not a pid-namespace init', () => {
    const r = ckpt(['checkpoint', String(process.pid), '-o', '/dev/null', '--container']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/not the init of a pid namespace/);
  });

  it('refuses a container init checkpointed --subtree (its uts namespace is its own), leaving it running', () => {
    const dir = tmpDir('ckpt-container-');
    const { init, out } = startContainer(dir);
    const img = tmpImage();
    const r = ckpt(['checkpoint', String(init), '-o', img, '--subtree']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/pid namespace below ckpt's|uts namespace/);
    const n = lines(out);
    waitFor('the loop to continue', () => lines(out) >= n + 2);
  });

  it('a container started by util-linux unshare, which waits for its init, is checkpointed with a warning about it, and comes back', () => {
    const dir = tmpDir('ckpt-unshare-');
    const out = path.join(dir, 'count');
    const loop = `hostname ckpt-launched; n=0; while :; do n=$((n+1)); echo $n >> ${out}; sleep 0.1; done`;
    // ckpt run starts it as a plain command (no fd of the test leaks in);
    // unshare makes the namespaces and stays, waiting for the init.
    const unshare = Number(
      ckptOk([
        'run',
        '--',
        'unshare',
        '--pid',
        '--fork',
        '--mount-proc',
        '--uts',
        '--ipc',
        'sh',
        '-c',
        loop,
      ]).trim(),
    );
    leftovers.push(unshare);
    let init = 0;
    waitFor('the init', () => {
      init = childrenOf(unshare)[0] ?? 0;
      return init !== 0 && lines(out) > 2;
    });
    leftovers.push(init);
    const img = tmpImage();
    const r = ckpt(['checkpoint', String(init), '-o', img, '--kill', '--container']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      new RegExp(
        `pid ${unshare} \\(unshare\\), which started the container, also holds the .* namespace .*; the restored container gets namespaces of its own`,
      ),
    );
    waitFor('the container to die', () => procState(init) === undefined);
    const n = lines(out);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(init);
    waitFor('the loop to continue', () => lines(out) >= n + 3);
    expect(nsenter(init, ['-u'], ['hostname']).trim()).toBe('ckpt-launched');
  });
});
