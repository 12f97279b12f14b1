import { describe, expect, it } from 'vitest';
import { parseSysvIpc } from '../../src/index.js';

// As Linux 6.18 prints them (columns by the header's names).
const SHM = `       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
   6221057          1   640                 12388 22156 22156      2     0     0     0     0 1795000000          0 1795000000                 12288                     0
         0          2  1600               1048576 22156 22156      1  1000  1000     0     0 1795000000          0 1795000000                 12288                     0
`;
const MSG = `       key      msqid perms      cbytes       qnum lspid lrpid   uid   gid  cuid  cgid      stime      rtime      ctime
   6221060          1   620        3005          3 22156     0     0     0     0     0 1795000000          0 1795000000
`;
const SEM = `       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime
  -1234567          5   600          4     0     0     0     0          0 1795000000
`;

describe('parseSysvIpc', () => {
  it('reads every object with its permissions, and each column by name', () => {
    const shm = parseSysvIpc(SHM, 'shm');
    expect(shm.map(({ columns, ...perm }) => perm)).toEqual([
      { key: 6221057, id: 1, uid: 0, gid: 0, cuid: 0, cgid: 0, mode: 0o640 },
      { key: 0, id: 2, uid: 1000, gid: 1000, cuid: 0, cgid: 0, mode: 0o1600 },
    ]);
    expect(shm[1]!.columns.size).toBe('1048576');
    expect(shm[0]!.columns.nattch).toBe('2');
    const [q] = parseSysvIpc(MSG, 'msg');
    expect(q).toMatchObject({ key: 6221060, id: 1, mode: 0o620 });
    expect(q!.columns.qnum).toBe('3');
    // A key above 2^31 prints negative (%10d of a key_t).
    expect(parseSysvIpc(SEM, 'sem')[0]).toMatchObject({ key: -1234567, id: 5, mode: 0o600 });
  });

  it('an empty table has no objects', () => {
    expect(parseSysvIpc(SHM.split('\n')[0]!, 'shm')).toEqual([]);
  });

  it('a malformed line is an error naming the file and column', () => {
    expect(() => parseSysvIpc(MSG.replace('620', 'rw-'), 'msg', '/x')).toThrow(
      "/x: column perms of '6221060          1   rw-",
    );
    expect(() => parseSysvIpc(SEM.replace('     5 ', '     x '), 'sem')).toThrow(
      /\/proc\/sysvipc\/sem: column semid of .* is not a number/,
    );
  });
});
