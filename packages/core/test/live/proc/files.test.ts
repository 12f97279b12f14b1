import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireRoot } from '../../../../../test/support/prereq.js';
import { isCkptError } from '../../../src/errors.js';
import {
  listFds,
  readFdinfo,
  readFdTarget,
  readOpenFiles,
  statFd,
} from '../../../src/proc/index.js';
import { buildHelper, type Helper, type HelperBuild, startHelper } from './support.js';

let build: HelperBuild;
let helper: Helper;

beforeAll(async () => {
  requireRoot();
  build = buildHelper();
  helper = await startHelper(build, ['files', build.dir]);
});

afterAll(async () => {
  await helper?.kill();
  build?.cleanup();
});

describe('open files of a live process', () => {
  it('lists the fds in order', () => {
    expect(listFds(helper.pid).filter((fd) => fd <= 9)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });

  it('reads an unlinked file at a known offset with O_CLOEXEC', () => {
    expect(readFdTarget(helper.pid, 3)).toMatchObject({
      kind: 'path',
      path: `${build.dir}/with space.txt`,
      deleted: true,
    });
    const info = readFdinfo(helper.pid, 3);
    expect(info.pos).toBe(5n);
    expect(info.cloexec).toBe(true);
    expect(info.flags & 3).toBe(2); // O_RDWR
    const st = statFd(helper.pid, 3);
    expect(st.type).toBe('regular');
    expect(st.size).toBe(4 * 4096);
    expect(st.ino).toBe(info.ino);
  });

  it('reads pipes, eventfds, sockets and devices', () => {
    const pipeR = readFdTarget(helper.pid, 4);
    const pipeW = readFdTarget(helper.pid, 5);
    expect(pipeR.kind).toBe('pipe');
    expect(pipeW.inode).toBe(pipeR.inode);
    expect(readFdinfo(helper.pid, 4).flags & 3).toBe(0); // O_RDONLY
    expect(readFdinfo(helper.pid, 5).flags & 3).toBe(1); // O_WRONLY
    expect(statFd(helper.pid, 4)).toMatchObject({ type: 'fifo', ino: pipeR.inode });

    expect(readFdTarget(helper.pid, 6)).toMatchObject({ kind: 'anon_inode', anonType: 'eventfd' });
    expect(readFdinfo(helper.pid, 6).extra[0]).toMatch(/^eventfd-count:\s+7$/);
    expect(statFd(helper.pid, 6).type).toBe('unknown');

    expect(readFdTarget(helper.pid, 7).kind).toBe('socket');
    expect(statFd(helper.pid, 7).type).toBe('socket');

    expect(readFdTarget(helper.pid, 9).path).toBe('/dev/null');
    expect(statFd(helper.pid, 9)).toMatchObject({ type: 'chr', rdev: (1 << 8) | 3 });
  });

  it('reads everything at once and reports a closed fd as ENOENT', () => {
    const all = readOpenFiles(helper.pid);
    expect(all.map((f) => f.fd)).toEqual(listFds(helper.pid));
    try {
      readFdinfo(helper.pid, 999);
      expect.unreachable();
    } catch (e) {
      expect(isCkptError(e, 'ENOENT')).toBe(true);
      expect((e as Error).message).toBe(`fd 999 of process ${helper.pid} is not open`);
    }
  });
});
