/**
 * SysV IPC objects of a container (@ckpt/ipc, the `sysvipc` fixture as the
 * container's init, with a child sharing a segment): after checkpoint
 * --kill and restart -d every segment (attached, removed but attached, not
 * attached), the message queue and the semaphore set come back in the new
 * ipc namespace with their ids, keys, modes, sizes, contents, messages and
 * values, and the attached segment is still shared between parent and
 * child. A checkpoint that leaves the container running takes no message
 * and changes no value. A value the kernel refuses (a corrupted image)
 * fails the restart naming the object, and nothing is left. A subtree attached to a segment of the host's ipc
 * namespace is refused (packages/fs/test/live/files.test.ts).
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ipcSemRecord } from '@ckpt/ipc';
import { beforeAll, describe, expect, it } from 'vitest';
import { ckpt, ckptOk } from '../support/ckpt.js';
import { compileFixture, isAlive, procState, readLayout, readOr } from '../support/fixtures.js';
import { patchRecords } from '../support/image.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireCommand, requireRoot } from '../support/prereq.js';
import { childrenOf, nsenter, waitFor } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();
const WAIT_MS = 20_000;

beforeAll(() => {
  requireRoot();
  for (const cmd of ['unshare', 'nsenter', 'cat']) requireCommand(cmd);
});

/** The fixture as a container's init; its work directory and host pid. */
function startContainer(): { dir: string; init: number } {
  const bin = compileFixture('sysvipc');
  const dir = tmpDir('ckpt-sysvipc-');
  const stderr = path.join(dir, 'stderr');
  const init = Number(ckptOk(['run', '--container', '--stderr', stderr, '--', bin, dir]).trim());
  leftovers.push(init);
  waitFor('the fixture to be ready', () => readOr(path.join(dir, 'ready')).endsWith('\n'), WAIT_MS);
  leftovers.push(...childrenOf(init));
  return { dir, init };
}

/** /proc/sysvipc/KIND inside the container: each object's key, id and perms columns. */
function objects(init: number): string[] {
  const text = nsenter(
    init,
    ['-i'],
    ['cat', '/proc/sysvipc/shm', '/proc/sysvipc/msg', '/proc/sysvipc/sem'],
  );
  return text
    .split('\n')
    .filter((l) => /^\s*-?\d/.test(l))
    .map((l) => l.trim().split(/\s+/).slice(0, 3).join(' '));
}

/** Tell the fixture to check itself; expect PASS (its stderr explains a FAIL). */
function expectPass(dir: string): void {
  fs.writeFileSync(path.join(dir, 'go'), '');
  waitFor('the fixture result', () => readOr(path.join(dir, 'result')).endsWith('\n'), 30_000);
  expect(readOr(path.join(dir, 'result')).trim(), readOr(path.join(dir, 'stderr'))).toBe('PASS');
}

describe('SysV IPC objects of a container', () => {
  it('come back with their ids, contents, messages and values; the segment stays shared', () => {
    const { dir, init } = startContainer();
    const before = objects(init);
    // Three segments, one queue, one semaphore set, with the ids the fixture got.
    const [shmA, shmB, shmC, msq, sem] = readLayout(dir).ids!.split(' ').map(Number);
    expect(before).toEqual([
      `6221057 ${shmA} 640`,
      `0 ${shmB} 1600`,
      `6221059 ${shmC} 2604`,
      `6221060 ${msq} 620`,
      `6221061 ${sem} 600`,
    ]);
    const img = tmpImage();
    ckptOk(['checkpoint', String(init), '-o', img, '--kill', '--container']);
    waitFor('the container to die', () => procState(init) === undefined, WAIT_MS);
    const info = JSON.parse(ckptOk(['info', '--json', img])) as {
      records: { name: string; value?: Record<string, unknown> }[];
    };
    expect(info.records.find((r) => r.name === 'ipc')?.value).toMatchObject({
      nshm: 3,
      nmsg: 1,
      nsem: 1,
    });
    expect(info.records.filter((r) => r.name === 'ipc_msg_msg')).toHaveLength(3);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(init);
    expect(objects(init)).toEqual(before);
    ckptOk(['info', img]); // every new record prints
    expectPass(dir);
  });

  it('are left as they were by a checkpoint that leaves the container running', () => {
    const { dir, init } = startContainer();
    const before = objects(init);
    for (let i = 0; i < 2; i++) {
      ckptOk(['checkpoint', String(init), '-o', tmpImage(), '--leave-running', '--container']);
    }
    expect(objects(init)).toEqual(before);
    expectPass(dir);
  });

  it('an object the kernel refuses fails the restart, naming it, and leaves nothing behind', () => {
    const { dir, init } = startContainer();
    const child = childrenOf(init)[0]!;
    const [, , , , sem] = readLayout(dir).ids!.split(' ').map(Number);
    const img = tmpImage();
    ckptOk(['checkpoint', String(init), '-o', img, '--kill', '--container']);
    waitFor('the container to die', () => procState(init) === undefined, WAIT_MS);
    const edited = patchRecords(img, ipcSemRecord, (v) => ({
      ...v,
      values: [40_000, ...v.values.slice(1)],
    }));
    expect(edited).toBe(1); // 40000 is above SEMVMX (32767)
    const r = ckpt(['restart', img, '-d']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`SysV semaphore set ${sem} (key 6221061)`);
    expect(isAlive(init)).toBe(false);
    expect(isAlive(child)).toBe(false);
  });
});

describe('SysV segments of the host attached by a subtree', () => {
  it('come back attached, with their ids and data; the segment stays shared', () => {
    requireCommand('ipcrm');
    const bin = compileFixture('sysvipc');
    const dir = tmpDir('ckpt-sysvipc-host-');
    // The fixture's objects live on the host after it: remove them however the test ends.
    const removeObjects = () => {
      for (const [flag, key] of [
        ['-M', '0x5eed01'],
        ['-M', '0x5eed03'],
        ['-Q', '0x5eed04'],
        ['-S', '0x5eed05'],
      ]) {
        spawnSync('ipcrm', [flag!, key!], { stdio: 'ignore' });
      }
    };
    removeObjects();
    try {
      const stderr = path.join(dir, 'stderr');
      const pid = Number(ckptOk(['run', '--stderr', stderr, '--', bin, dir]).trim());
      leftovers.push(pid);
      waitFor(
        'the fixture to be ready',
        () => readOr(path.join(dir, 'ready')).endsWith('\n'),
        WAIT_MS,
      );
      leftovers.push(...childrenOf(pid));
      const img = tmpImage();
      ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
      waitFor('the fixture gone', () => procState(pid) === undefined, WAIT_MS);
      const info = JSON.parse(ckptOk(['info', '--json', img])) as { records: { name: string }[] };
      // Segments A and B (attached) are saved, C (not attached) is the host's alone.
      expect(info.records.filter((r) => r.name === 'ipc_shm')).toHaveLength(2);
      expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
      expectPass(dir);
    } finally {
      removeObjects();
    }
  });
});
