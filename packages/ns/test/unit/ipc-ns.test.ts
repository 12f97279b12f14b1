import { CkptError } from '@ckpt/core';
import { describe, expect, it } from 'vitest';
import {
  emptyIpcNs,
  formatSysctl,
  IPC_SYSCTLS,
  type IpcNs,
  ipcMni,
  needsSet,
  parseSysctl,
  sysctlPath,
  validateIpcNs,
} from '../../src/ipc-sysctls.js';
import { ipcNsRecord, taskNsRecord } from '../../src/records.js';

/** The defaults of a fresh ipc namespace on Linux 6.x (x86-64). */
function fresh(): IpcNs {
  return {
    ...emptyIpcNs(),
    shmmax: 18446744073692774399n,
    shmall: 18446744073692774399n,
    shmmni: 4096,
    msgmax: 8192,
    msgmnb: 16384,
    msgmni: 32000,
    semmsl: 32000,
    semmns: 1024000000,
    semopm: 500,
    semmni: 32000,
    msgNextId: -1,
    semNextId: -1,
    shmNextId: -1,
    mqQueuesMax: 256,
    mqMsgMax: 10,
    mqMsgsizeMax: 8192,
    mqMsgDefault: 10,
    mqMsgsizeDefault: 8192,
  };
}

const byName = (name: string) => IPC_SYSCTLS.find((s) => s.name === name)!;
const everyFile = () => true;

describe('ipc_ns and ns records', () => {
  it('round-trip, negative ints and the missing list included', () => {
    const ns = {
      ...fresh(),
      mqQueuesMax: -5,
      semmsl: -2147483648,
      missing: ['kernel.msg_next_id'],
    };
    expect(ipcNsRecord.decode(ipcNsRecord.encode(ns))).toEqual(ns);
    const rec = { uts: 1, ipc: 2, net: 3, cgroup: 4 };
    expect(taskNsRecord.decode(taskNsRecord.encode(rec))).toEqual(rec);
  });

  it('refuses an int out of the i32 range on encode', () => {
    expect(() => ipcNsRecord.encode({ ...fresh(), msgmax: 2 ** 31 })).toThrow(
      /msgmax: 2147483648 is not an i32/,
    );
  });
});

describe('ipc sysctl files', () => {
  it('maps dotted names to /proc/sys paths', () => {
    expect(sysctlPath('fs.mqueue.queues_max')).toBe('/proc/sys/fs/mqueue/queues_max');
    expect(sysctlPath('kernel.sem')).toBe('/proc/sys/kernel/sem');
  });

  it('parses and formats the four values of kernel.sem and the ulongs of shm', () => {
    const ns = emptyIpcNs();
    parseSysctl(byName('kernel.sem'), '250\t32001\t33\t129\n', ns);
    expect([ns.semmsl, ns.semmns, ns.semopm, ns.semmni]).toEqual([250, 32001, 33, 129]);
    expect(formatSysctl(byName('kernel.sem'), ns)).toBe('250 32001 33 129');
    parseSysctl(byName('kernel.shmmax'), '18446744073709551615\n', ns);
    expect(ns.shmmax).toBe(2n ** 64n - 1n);
    parseSysctl(byName('kernel.msg_next_id'), '-1\n', ns);
    expect(ns.msgNextId).toBe(-1);
  });

  it('refuses text the kernel would not print', () => {
    const ns = emptyIpcNs();
    expect(() => parseSysctl(byName('kernel.sem'), '1 2 3', ns)).toThrow(/kernel\/sem/);
    expect(() => parseSysctl(byName('kernel.msgmax'), 'lots', ns)).toThrow(CkptError);
    expect(() => parseSysctl(byName('kernel.shmall'), '-1', ns)).toThrow(/kernel\/shmall/);
  });

  it('knows ipc_mni from the kernel command line', () => {
    expect(ipcMni('quiet root=/dev/vda')).toBe(32768);
    expect(ipcMni('quiet ipcmni_extend root=/dev/vda')).toBe(1 << 24);
  });

  it('sets a *_next_id only when it was set (-1 is the fresh value and cannot be written)', () => {
    const ns = { ...fresh(), shmNextId: 7, missing: ['kernel.sem_next_id'] };
    expect(needsSet(byName('kernel.msg_next_id'), ns)).toBe(false);
    expect(needsSet(byName('kernel.shm_next_id'), ns)).toBe(true);
    expect(needsSet(byName('kernel.sem_next_id'), ns)).toBe(false);
    expect(needsSet(byName('kernel.msgmax'), ns)).toBe(true);
  });
});

describe('validating an ipc namespace before restoring it', () => {
  const opts = { mni: 32768, exists: everyFile };

  it('accepts the defaults and the kernel limits', () => {
    expect(() => validateIpcNs(fresh(), opts)).not.toThrow();
    const edge = { ...fresh(), msgmni: 32768, mqMsgMax: 65536, mqMsgsizeMax: 128, semmsl: -1 };
    expect(() => validateIpcNs(edge, opts)).not.toThrow();
  });

  it('names the sysctl and the value the kernel would refuse', () => {
    const cases: [Partial<IpcNs>, RegExp][] = [
      [{ msgmni: 40000 }, /kernel\.msgmni = 40000.*0\.\.32768/],
      [{ semmni: 32769 }, /kernel\.sem = 32000 1024000000 500 32769 \(semmni 32769\)/],
      [{ shmRmidForced: 2 }, /kernel\.shm_rmid_forced = 2.*0\.\.1/],
      [{ msgmax: -1 }, /kernel\.msgmax = -1/],
      [{ mqMsgMax: 0 }, /fs\.mqueue\.msg_max = 0.*1\.\.65536/],
      [{ mqMsgsizeDefault: 127 }, /fs\.mqueue\.msgsize_default = 127/],
    ];
    for (const [patch, message] of cases) {
      const err = (() => {
        try {
          validateIpcNs({ ...fresh(), ...patch }, opts);
        } catch (e) {
          return e as CkptError;
        }
        throw new Error(`accepted ${JSON.stringify(patch)}`);
      })();
      expect(err.code).toBe('EINVAL');
      expect(err.message).toMatch(message);
    }
    expect(() =>
      validateIpcNs({ ...fresh(), msgmni: 40000 }, { ...opts, mni: 1 << 24 }),
    ).not.toThrow();
  });

  it('refuses a sysctl this kernel lacks, unless it has nothing to set', () => {
    const noMqueue = {
      ...opts,
      exists: (p: string) => !p.includes('mqueue') && !p.endsWith('_id'),
    };
    expect(() => validateIpcNs(fresh(), noMqueue)).toThrow(
      /fs\.mqueue\.queues_max = 256.*no \/proc/,
    );
    const lacking = {
      ...fresh(),
      missing: IPC_SYSCTLS.filter((s) => s.name.includes('mqueue')).map((s) => s.name),
    };
    // Next ids of -1 need no file; missing mqueue sysctls are skipped.
    expect(() => validateIpcNs(lacking, noMqueue)).not.toThrow();
    expect(() => validateIpcNs({ ...lacking, msgNextId: 3 }, noMqueue)).toThrow(
      /kernel\.msg_next_id = 3/,
    );
  });
});
