import { statSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireRoot } from '../../../../../test/support/prereq.js';
import { isCkptError } from '../../../src/errors.js';
import {
  readAuxv,
  readCmdline,
  readComm,
  readCwd,
  readEnviron,
  readExe,
  readNamespace,
  readNamespaces,
  readPersonality,
  readRoot,
  readSmapsRollup,
  readStat,
  readStatus,
  readTimerslackNs,
} from '../../../src/proc/index.js';
import { buildHelper, type Helper, type HelperBuild, startHelper } from './support.js';

let build: HelperBuild;
let helper: Helper;

beforeAll(async () => {
  requireRoot();
  build = buildHelper();
  helper = await startHelper(build, ['files', build.dir], 1, {
    cwd: build.dir,
    env: { CKPT_TEST_MARK: 'x y' },
  });
});

afterAll(async () => {
  await helper?.kill();
  build?.cleanup();
});

describe('stat and status of a live process', () => {
  it('match what the test knows', () => {
    const s = readStat(helper.pid);
    expect(s.pid).toBe(helper.pid);
    expect(s.ppid).toBe(process.pid);
    expect(s.comm).toBe('a) (b c)');
    expect(s.state).toBe('S');
    expect(s.numThreads).toBe(1);
    expect(s.exitSignal).toBe(17);
    // Fields 45-52 are visible to root: the argv area lies below the env area.
    expect(s.argStart).toBeGreaterThan(0n);
    expect(s.argEnd).toBeLessThanOrEqual(s.envStart);
    expect(s.startBrk).toBeGreaterThan(s.endData);

    const st = readStatus(helper.pid);
    expect(st.name).toBe('a) (b c)');
    expect([st.pid, st.tgid, st.ppid, st.tracerPid]).toEqual([
      helper.pid,
      helper.pid,
      process.pid,
      0,
    ]);
    expect(st.nsPid).toEqual([helper.pid]);
    expect(st.sigBlk).toBe(1n << 9n); // SIGUSR1
    expect(st.sigIgn & (1n << 11n)).toBe(1n << 11n); // SIGUSR2
    expect(st.uid.effective).toBe(0);
    expect(st.threads).toBe(1);
  });

  it('reads the same stat through the task directory', () => {
    const s = readStat(helper.pid, helper.pid);
    expect(s.comm).toBe('a) (b c)');
    expect(s.starttime).toBe(readStat(helper.pid).starttime);
  });
});

describe('small readers', () => {
  it('read cmdline, environ, exe, cwd, root, comm, personality, timer slack, auxv', () => {
    expect(readCmdline(helper.pid)).toEqual([build.binary, 'files', build.dir]);
    expect(readEnviron(helper.pid)).toContain('CKPT_TEST_MARK=x y');
    expect(readExe(helper.pid)).toBe(build.binary);
    expect(readCwd(helper.pid)).toBe(build.dir);
    expect(readRoot(helper.pid)).toBe('/');
    expect(readComm(helper.pid)).toBe('a) (b c)');
    expect(readPersonality(helper.pid)).toBe(0);
    expect(readTimerslackNs(helper.pid)).toBe(50000n);
    const auxv = new Map(readAuxv(helper.pid).map((e) => [e.type, e.value]));
    expect(auxv.get(6)).toBe(4096n); // AT_PAGESZ
    expect(auxv.get(11)).toBe(0n); // AT_UID
  });

  it('read the namespaces, matching the inodes stat(2) sees', () => {
    const mine = new Map(readNamespaces(process.pid).map((n) => [n.type, n.inode]));
    const nss = readNamespaces(helper.pid);
    expect(nss.map((n) => n.type)).toEqual([
      'cgroup',
      'ipc',
      'mnt',
      'net',
      'pid',
      'pid_for_children',
      'time',
      'time_for_children',
      'user',
      'uts',
    ]);
    for (const n of nss) expect(n.inode).toBe(mine.get(n.type));
    expect(readNamespace(helper.pid, 'net').inode).toBe(statSync(`/proc/${helper.pid}/ns/net`).ino);
  });
});

describe('zombies and exited processes', () => {
  it('a zombie has a stat but no exe, namespaces or address space', async () => {
    const z = await startHelper(build, ['zombie']);
    try {
      const zpid = Number(z.lines[0]);
      // The child exits at once; wait until the kernel shows it as a zombie.
      while (readStat(zpid).state !== 'Z') await new Promise((r) => setTimeout(r, 10));
      expect(readStat(zpid).ppid).toBe(z.pid);
      expect(readStatus(zpid).umask).toBeUndefined();
      const codeOf = (f: () => unknown) => {
        try {
          f();
          return 'none';
        } catch (e) {
          expect(isCkptError(e)).toBe(true);
          return (e as { code: string }).code;
        }
      };
      expect(codeOf(() => readExe(zpid))).toBe('ENOENT');
      expect(codeOf(() => readNamespace(zpid, 'net'))).toBe('ENOENT');
      expect(codeOf(() => readSmapsRollup(zpid))).toBe('ESRCH');
      expect(readCmdline(zpid)).toEqual([]);
    } finally {
      await z.kill();
    }
  });

  it('reading a process that has exited fails with ESRCH naming the pid', async () => {
    const h = await startHelper(build, ['zombie']);
    const pid = h.pid;
    await h.kill();
    try {
      readStatus(pid);
      expect.unreachable();
    } catch (e) {
      expect(isCkptError(e, 'ESRCH')).toBe(true);
      expect((e as Error).message).toBe(`process ${pid} does not exist (it may have exited)`);
      expect((e as { context: { pid: number } }).context.pid).toBe(pid);
    }
  });
});
