/**
 * Memory shared between the tasks of a tree (tree_shared_memory fixture):
 * shared anonymous memory inherited through fork is one shmem object after
 * restart, saved once in the image (with pages only the child wrote, and a
 * part only the child maps), mapped by parent and child at their saved
 * offsets; a write by one is seen by the other. Private memory stays
 * copy-on-write, and a shared file mapping stays shared. The same in a
 * container, where tasks open each other's map_files through the
 * container's own /proc; and a container whose shared memory a process
 * outside maps or holds an fd on fails with ELEAK.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ckpt, ckptOk, imagePath } from '../support/ckpt.js';
import {
  compileFixture,
  type FixtureHandle,
  isAlive,
  procState,
  readLayout,
  readOr,
} from '../support/fixtures.js';
import { liveFixtures } from '../support/live.js';
import { requireCommand } from '../support/prereq.js';
import { childrenOf, waitFor } from '../support/procs.js';

const { start: startFx, leftovers } = liveFixtures();
const PAGE = 4096n;

interface Layout {
  child: number;
  shanon: bigint;
  part: bigint;
}

function parseLayout(layout: Record<string, string>): Layout {
  const addr = (k: string) => BigInt(layout[k]!.split(' ')[0]!);
  return { child: Number(layout.child), shanon: addr('shanon'), part: addr('part') };
}

/** The inode of the shared anonymous memory ("/dev/zero (deleted)") `pid` maps at `addr`. */
function shmemInodeAt(pid: number, addr: bigint): number {
  for (const line of fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ (\d+)\s+\/dev\/zero \(deleted\)$/.exec(line);
    if (m && BigInt(`0x${m[1]}`) <= addr && addr < BigInt(`0x${m[2]}`)) return Number(m[3]);
  }
  throw new Error(`pid ${pid} maps no shared anonymous memory at 0x${addr.toString(16)}`);
}

/** Parent and child map the same object for each region (the child's part starts 4 pages in). */
function expectShared(parent: number, l: Layout): void {
  const shanon = shmemInodeAt(parent, l.shanon);
  const part = shmemInodeAt(parent, l.part);
  expect(shmemInodeAt(l.child, l.shanon)).toBe(shanon);
  expect(shmemInodeAt(l.child, l.part + 4n * PAGE)).toBe(part);
  expect(part).not.toBe(shanon);
}

/** /proc/PID/maps without the shmem inode numbers (a restart makes new objects). */
function maps(pid: number): string {
  return fs
    .readFileSync(`/proc/${pid}/maps`, 'utf8')
    .replace(/ \d+\s+\/dev\/zero \(deleted\)/g, ' /dev/zero (deleted)');
}

interface ImageRecord {
  name: string;
  value: Record<string, unknown>;
}

/**
 * The image holds each shared object once: two shmem objects (shanon with
 * the parent's 32 pages and the child's page 40, part with all 16 pages,
 * the 4 only the child maps included), each named by a VMA of both tasks,
 * which carry no pages of their own.
 */
function expectSavedOnce(img: string): void {
  const { records } = JSON.parse(ckptOk(['info', img, '--json'])) as { records: ImageRecord[] };
  const shmem = new Map<number, { size: string; nrPages: number }>();
  records.forEach((r, i) => {
    if (r.name !== 'shmem') return;
    const def = records[i - 1]!;
    expect(def.name).toBe('objref');
    shmem.set(def.value.objref as number, r.value as { size: string; nrPages: number });
  });
  expect([...shmem.values()].sort((a, b) => a.nrPages - b.nrPages)).toEqual([
    expect.objectContaining({ size: '0x10000', nrPages: 16 }),
    expect.objectContaining({ size: '0x40000', nrPages: 33 }),
  ]);
  const shared = records.filter((r) => r.name === 'vma' && r.value.kind === 3);
  expect(shared).toHaveLength(4);
  for (const v of shared) expect(v.value.nrPages).toBe(0);
  for (const objref of shmem.keys()) {
    expect(shared.filter((v) => v.value.objref === objref)).toHaveLength(2);
  }
}

function start(): { f: FixtureHandle; l: Layout } {
  const f = startFx('tree_shared_memory');
  const l = parseLayout(f.layout);
  leftovers.push(f.pid, l.child);
  return { f, l };
}

describe('memory shared between the tasks of a tree', () => {
  it('shared anonymous memory is one object after restart, saved once; private memory stays private; a shared file stays shared', () => {
    const { f, l } = start();
    expectShared(f.pid, l);
    const before = [maps(f.pid), maps(l.child)];
    const img = imagePath();
    try {
      ckptOk(['checkpoint', String(f.pid), '-o', img, '--kill']);
      // Killed, maybe still exiting (the CLI does not wait for that).
      waitFor('the tree killed', () => !isAlive(f.pid) && !isAlive(l.child));
      expectSavedOnce(img);
      expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(f.pid);
    } finally {
      fs.rmSync(path.dirname(img), { recursive: true, force: true });
    }
    expect(isAlive(l.child)).toBe(true);
    expect([maps(f.pid), maps(l.child)]).toEqual(before);
    expectShared(f.pid, l);
    f.go();
    expect(f.waitResult(30_000)).toBe('PASS');
  });

  it('a checkpoint that leaves the tree running leaves its shared memory as it was', () => {
    const { f, l } = start();
    const img = imagePath();
    try {
      ckptOk(['checkpoint', String(f.pid), '-o', img, '--leave-running']);
    } finally {
      fs.rmSync(path.dirname(img), { recursive: true, force: true });
    }
    expectShared(f.pid, l);
    f.go();
    expect(f.waitResult(30_000)).toBe('PASS');
  });
});

/** How long each wait here may take (longer than waitFor's default). */
const WAIT_MS = 10_000;

interface Container {
  dir: string;
  init: number;
  /** The fixture's layout, with the child's pid as the host sees it. */
  l: Layout;
}

/** The fixture as the init of a container (`ckpt run --container`). */
function startContainer(): Container {
  const bin = compileFixture('tree_shared_memory');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-shm-container-'));
  const stderr = path.join(dir, 'stderr');
  const init = Number(ckptOk(['run', '--container', '--stderr', stderr, '--', bin, dir]).trim());
  leftovers.push(init);
  waitFor('the fixture to be ready', () => readOr(path.join(dir, 'ready')).endsWith('\n'), WAIT_MS);
  // Inside, the fixture is pid 1 and knows its child by its inner pid.
  expect(readOr(path.join(dir, 'ready'))).toBe('1\n');
  const [child] = childrenOf(init);
  expect(child).toBeDefined();
  leftovers.push(child!);
  return { dir, init, l: { ...parseLayout(readLayout(dir)), child: child! } };
}

function containerResult(dir: string): string {
  waitFor('the container result', () => readOr(path.join(dir, 'result')).endsWith('\n'), 30_000);
  return readOr(path.join(dir, 'result')).trim();
}

describe('memory shared between the tasks of a container', () => {
  it('is one object after restart, mapped through the container’s own /proc', () => {
    requireCommand('unshare');
    const { dir, init, l } = startContainer();
    try {
      expectShared(init, l);
      const before = [maps(init), maps(l.child)];
      const img = imagePath();
      try {
        ckptOk(['checkpoint', String(init), '-o', img, '--kill', '--container']);
        waitFor('the container to die', () => procState(init) === undefined, WAIT_MS);
        expectSavedOnce(img);
        expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(init);
      } finally {
        fs.rmSync(path.dirname(img), { recursive: true, force: true });
      }
      expect([maps(init), maps(l.child)]).toEqual(before);
      expectShared(init, l);
      fs.writeFileSync(path.join(dir, 'go'), '');
      expect(containerResult(dir)).toBe('PASS');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is a leak when a process outside holds an fd on it or maps it', () => {
    requireCommand('unshare');
    requireCommand('python3');
    const { dir, init, l } = startContainer();
    try {
      const region = fs
        .readFileSync(`/proc/${l.child}/maps`, 'utf8')
        .split('\n')
        .find((line) => line.startsWith(l.shanon.toString(16)))!
        .split(' ')[0]!;
      const mapFiles = `/proc/${l.child}/map_files/${region}`;

      // This test process holds an fd on the object.
      const fd = fs.openSync(mapFiles, 'r');
      let r: ReturnType<typeof ckpt>;
      try {
        r = ckpt(['checkpoint', String(init), '-o', '/dev/null', '--container']);
      } finally {
        fs.closeSync(fd);
      }
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(
        new RegExp(
          `pid ${process.pid} outside the container also holds the shared anonymous memory .* as its fd ${fd}`,
        ),
      );

      // Another process maps it (and keeps no fd on it).
      const mapped = path.join(dir, 'mapped');
      const mapper = spawn(
        'python3',
        [
          '-c',
          [
            'import ctypes, os, sys, time',
            'libc = ctypes.CDLL(None, use_errno=True)',
            'libc.mmap.restype = ctypes.c_void_p',
            'libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]',
            'fd = os.open(sys.argv[1], os.O_RDWR)',
            'if libc.mmap(None, 4096, 3, 1, fd, 0) in (None, 2**64 - 1): sys.exit(1)',
            'os.close(fd)',
            "open(sys.argv[2], 'w').close()",
            'time.sleep(60)',
          ].join('\n'),
          mapFiles,
          mapped,
        ],
        { stdio: 'ignore' },
      );
      leftovers.push(mapper.pid!);
      waitFor('the outside process to map the memory', () => fs.existsSync(mapped), WAIT_MS);
      r = ckpt(['checkpoint', String(init), '-o', '/dev/null', '--container']);
      mapper.kill('SIGKILL');
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(
        new RegExp(
          `pid ${mapper.pid} outside the container also holds the shared anonymous memory .* as its memory at 0x`,
        ),
      );

      // The container was left running, untouched.
      expect(isAlive(init)).toBe(true);
      fs.writeFileSync(path.join(dir, 'go'), '');
      expect(containerResult(dir)).toBe('PASS');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
