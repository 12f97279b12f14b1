/**
 * The ipc namespace (@ckpt/ns): a container (`ckpt run --container`) whose
 * ipc sysctls were changed from inside comes back, after checkpoint --kill
 * and restart -d, in a fresh ipc namespace with the same values, shared by
 * its child, while the host's values stay as they were. A value the kernel
 * refuses fails the restart naming the sysctl; a subtree is restored in the
 * host's ipc namespace without changing it; a task with an ipc or uts
 * namespace other than its parent's (or a subtree root with its own) gets
 * a new one (test/live/nested-ns.test.ts has more). A task in a cgroup
 * namespace of its own, which restart would put in the host's, is refused
 * at checkpoint (time namespaces: test/live/time-ns.test.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { type IpcNs, ipcNsRecord } from '@ckpt/ns';
import { beforeAll, describe, expect, it } from 'vitest';
import { ckpt, ckptOk } from '../support/ckpt.js';
import { isAlive, procState } from '../support/fixtures.js';
import { patchRecords } from '../support/image.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireCommand, requireRoot } from '../support/prereq.js';
import { childrenOf, namespaceOf, nsenter, waitFor } from '../support/procs.js';

/** The sysctls the tests look at (under /proc/sys), and what the container sets them to. */
const SET: Record<string, string> = {
  'kernel/msgmax': '1234',
  'kernel/msgmnb': '23456',
  'kernel/shmmax': '99999999',
  'kernel/shmmni': '333',
  'kernel/sem': '250 32001 33 129',
  'kernel/shm_rmid_forced': '1',
  'kernel/msg_next_id': '42',
  'fs/mqueue/queues_max': '77',
  'fs/mqueue/msgsize_default': '4000',
};
const FILES = [...Object.keys(SET), 'kernel/msgmni', 'fs/mqueue/msg_max', 'kernel/sem_next_id'];

/** Processes to kill after each test (killing a container's init ends it). */
const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

beforeAll(() => {
  requireRoot();
  for (const cmd of ['unshare', 'nsenter', 'cat']) requireCommand(cmd);
});

/** The sysctls of FILES as seen in the ipc namespace of `pid` (tabs and newlines normalised). */
function sysctls(pid: number | 'self'): Record<string, string> {
  const paths = FILES.map((f) => `/proc/sys/${f}`);
  const out =
    pid === 'self'
      ? paths.map((p) => fs.readFileSync(p, 'utf8')).join('')
      : nsenter(pid, ['-i'], ['cat', ...paths]);
  const lines = out.trimEnd().split('\n');
  return Object.fromEntries(FILES.map((f, i) => [f, lines[i]!.trim().split(/\s+/).join(' ')]));
}

/**
 * Start a container whose init runs `setup`, then `child &` and waits;
 * returns its init's host pid and the child's, once the child runs.
 */
function startContainer(setup: string[], child = 'sleep 1000'): { init: number; child: number } {
  const ready = path.join(tmpDir('ckpt-ipc-ns-'), 'ready');
  const script = [...setup, `${child} &`, `echo $! > ${ready}`, 'wait'].join('\n');
  const init = Number(ckptOk(['run', '--container', '--', 'sh', '-c', script]).trim());
  leftovers.push(init);
  let kid = 0;
  waitFor('the container to start its child', () => {
    if (!fs.existsSync(ready) || fs.readFileSync(ready, 'utf8').trim() === '') return false;
    // The child of the container's init, by its host pid.
    const kids = childrenOf(init).filter((c) =>
      fs.readFileSync(`/proc/${c}/cmdline`, 'utf8').startsWith('sleep\x001000'),
    );
    kid = kids[0] ?? 0;
    return kid !== 0;
  });
  return { init, child: kid };
}

/** Rewrite the ipc_ns record of image `img` with `patch`, fixing the tail's checksum. */
function patchIpcNs(img: string, patch: Partial<IpcNs>): void {
  expect(patchRecords(img, ipcNsRecord, (v) => ({ ...v, ...patch }))).toBe(1);
}

describe('ipc namespace', () => {
  it("restores a container's ipc sysctls in its fresh ipc namespace; the host's are untouched", () => {
    const host = sysctls('self');
    const setup = Object.entries(SET).map(([f, v]) => `echo '${v}' > /proc/sys/${f}`);
    const { init, child } = startContainer(setup);
    const saved = sysctls(init);
    for (const [f, v] of Object.entries(SET)) expect(saved[f]).toBe(v);
    expect(sysctls('self')).toEqual(host);

    const img = tmpImage();
    ckptOk(['checkpoint', String(init), '-o', img, '--kill', '--container']);
    waitFor('the container to die', () => procState(init) === undefined);
    const info = ckptOk(['info', img]);
    expect(info).toMatch(/ipc_ns/);
    expect(info).toMatch(/msgmax: 1234/);

    const restored = Number(ckptOk(['restart', img, '-d']).trim());
    expect(restored).toBe(init);
    expect(namespaceOf(restored, 'ipc')).not.toBe(namespaceOf('self', 'ipc'));
    expect(isAlive(child)).toBe(true);
    expect(namespaceOf(child, 'ipc')).toBe(namespaceOf(restored, 'ipc'));
    expect(sysctls(restored)).toEqual(saved);
    expect(sysctls('self')).toEqual(host);
  });

  it('fails the restart naming the sysctl and value the kernel refuses, leaving nothing behind', () => {
    const host = sysctls('self');
    const { init, child } = startContainer([]);
    const img = tmpImage();
    ckptOk(['checkpoint', String(init), '-o', img, '--kill', '--container']);
    waitFor('the container to die', () => procState(init) === undefined);
    // Above ipc_mni even with ipcmni_extend.
    patchIpcNs(img, { msgmni: 50_000_000 });
    const r = ckpt(['restart', img, '-d']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/kernel\.msgmni = 50000000/);
    expect(isAlive(init)).toBe(false);
    expect(isAlive(child)).toBe(false);
    expect(sysctls('self')).toEqual(host);
  });

  it("restores a subtree in the host's ipc namespace without changing it", () => {
    const host = sysctls('self');
    const pid = Number(ckptOk(['run', '--', 'sleep', '1000']).trim());
    leftovers.push(pid);
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the process to die', () => procState(pid) === undefined);
    // As if the host's settings had changed since the checkpoint: restart
    // only warns (through the logger), and changes nothing.
    const msgmax = Number(host['kernel/msgmax']) + 1;
    patchIpcNs(img, { msgmax, mqQueuesMax: 5 });
    const r = ckpt(['restart', img, '-d']);
    expect(r.code, r.stderr).toBe(0);
    const restored = Number(r.stdout.trim());
    leftovers.push(restored);
    expect(isAlive(restored)).toBe(true);
    expect(namespaceOf(restored, 'ipc')).toBe(namespaceOf('self', 'ipc'));
    expect(sysctls('self')).toEqual(host);
  });

  it('restores a subtree whose root has its own ipc namespace in a new one', () => {
    const pid = Number(ckptOk(['run', '--', 'unshare', '-i', 'sleep', '1000']).trim());
    leftovers.push(pid);
    waitFor('unshare to exec sleep', () =>
      fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep\x00'),
    );
    expect(namespaceOf(pid, 'ipc')).not.toBe(namespaceOf('self', 'ipc'));
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the process to die', () => procState(pid) === undefined);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    expect(namespaceOf(pid, 'ipc')).not.toBe(namespaceOf('self', 'ipc'));
  });

  for (const type of ['ipc', 'uts'] as const) {
    it(`restores a container's task that has its own ${type} namespace in a new one of its own`, () => {
      const flag = type === 'ipc' ? '-i' : '-u';
      const { init, child } = startContainer([], `unshare ${flag} sleep 1000`);
      expect(namespaceOf(child, type)).not.toBe(namespaceOf(init, type));
      const img = tmpImage();
      ckptOk(['checkpoint', String(init), '-o', img, '--kill', '--container']);
      waitFor('the container to die', () => procState(init) === undefined);
      expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(init);
      expect(isAlive(child)).toBe(true);
      expect(namespaceOf(init, type)).not.toBe(namespaceOf('self', type));
      expect(namespaceOf(child, type)).not.toBe(namespaceOf(init, type));
      expect(namespaceOf(child, type)).not.toBe(namespaceOf('self', type));
    });
  }
});
