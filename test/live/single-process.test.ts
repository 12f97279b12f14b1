/**
 * A single process through checkpoint --kill and restart -d, checked from
 * inside (each fixture verifies its own state after restart) and outside.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CKPT_BIN, checkpointKillRestart, ckpt, ckptOk, imagePath } from '../support/ckpt.js';
import {
  expectStoppedUntilSigcont,
  type FixtureHandle,
  isAlive,
  sleepSync,
} from '../support/fixtures.js';
import { liveFixtures } from '../support/live.js';
import { tracerPid, waitFor } from '../support/procs.js';

const fixtures = liveFixtures();
const start = (name: string, args?: string[]): FixtureHandle => fixtures.start(name, { args });

describe('a restored process continues with its state intact', () => {
  for (const name of ['mem_vmas', 'gp_regs', 'fpu_regs']) {
    it(`${name}: restored with the same pid passes its self-check`, () => {
      const f = start(name);
      const maps = fs.readFileSync(`/proc/${f.pid}/maps`, 'utf8');
      const pid = checkpointKillRestart(f.pid);
      expect(pid).toBe(f.pid);
      expect(isAlive(pid)).toBe(true);
      // The same address space, line for line, apart from the shared
      // anonymous mapping's inode (a new shmem object).
      const norm = (s: string) =>
        s.replace(/ \d+\s+\/dev\/zero \(deleted\)/g, ' /dev/zero (deleted)');
      expect(norm(fs.readFileSync(`/proc/${pid}/maps`, 'utf8'))).toBe(norm(maps));
      f.go();
      expect(f.waitResult(60_000)).toMatch(/^PASS/);
    });
  }

  it('mlocked: locked memory stays locked (mlock, and mlock2 on fault, also a region filled through a userfaultfd)', () => {
    const f = start('mlocked');
    const vmLck = (pid: number) =>
      /VmLck:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    const before = vmLck(f.pid);
    // VmLck counts whole locked regions: 64 + 2000 pages mlock'ed, 64
    // under MLOCK_ONFAULT (the fixture checks only 10 of those are in).
    expect(before).toBe(String((64 + 2000 + 64) * 4));
    const pid = checkpointKillRestart(f.pid);
    expect(pid).toBe(f.pid);
    expect(vmLck(pid)).toBe(before);
    f.go();
    expect(f.waitResult(60_000)).toMatch(/^PASS/);
  });

  it('sealed: mseal(2)ed regions are sealed again (also one filled through a userfaultfd)', () => {
    const f = start('sealed');
    const sealed = (pid: number) =>
      (fs.readFileSync(`/proc/${pid}/smaps`, 'utf8').match(/^VmFlags:.* sl\b/gm) ?? []).length;
    const before = sealed(f.pid);
    expect(before).toBeGreaterThanOrEqual(3);
    const pid = checkpointKillRestart(f.pid);
    expect(pid).toBe(f.pid);
    expect(sealed(pid)).toBe(before);
    f.go();
    expect(f.waitResult(60_000)).toMatch(/^PASS/);
  });

  for (const name of ['counter', 'counter.py', 'counter.sh']) {
    it(`${name}: continues from the checkpointed value`, () => {
      const f = start(name);
      while (f.count!() < 3) sleepSync(20);
      const pid = checkpointKillRestart(f.pid);
      expect(pid).toBe(f.pid);
      const atRestart = f.count!();
      sleepSync(400);
      expect(isAlive(pid)).toBe(true);
      expect(f.count!()).toBeGreaterThan(atRestart);
      f.go();
      // Each counter checks that its count never skipped or repeated.
      expect(f.waitResult()).toMatch(/^PASS/);
    });
  }

  it('ckpt restart without -d waits for the process and exits with its status', () => {
    const f = start('sleeper', ['1']);
    const img = imagePath();
    ckptOk(['checkpoint', String(f.pid), '-o', img, '--kill']);
    const r = ckpt(['restart', img]);
    expect(r.code).toBe(0);
    expect(f.waitResult()).toMatch(/^PASS/);
  });

  it('signal dispositions are the saved ones: none ignored that was not (glibc 32 and 33 too)', () => {
    const ignored = (pid: number) =>
      /SigIgn:\s+([0-9a-f]+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1];
    // ckpt run starts it with every signal at its default.
    const pid = Number(ckptOk(['run', '--', 'sleep', '1000']).trim());
    try {
      expect(ignored(pid)).toBe('0000000000000000');
      const restored = checkpointKillRestart(pid);
      expect(ignored(restored)).toBe('0000000000000000');
    } finally {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });

  it('transparent huge pages disabled, every mapping offered to KSM and oom_score_adj are kept (sweep 10)', () => {
    // The program sets them, then reports what it reads back every 100 ms.
    const program = [
      'import ctypes, json, os, sys, time',
      'libc = ctypes.CDLL(None, use_errno=True)',
      'libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]',
      'assert libc.prctl(41, 1, 0, 0, 0) == 0  # PR_SET_THP_DISABLE',
      'assert libc.prctl(67, 1, 0, 0, 0) == 0  # PR_SET_MEMORY_MERGE',
      "open('/proc/self/oom_score_adj', 'w').write('777')",
      'd = sys.argv[1]',
      'while True:',
      "    v = {'thp': libc.prctl(42, 0, 0, 0, 0), 'merge': libc.prctl(68, 0, 0, 0, 0), 'oom': int(open('/proc/self/oom_score_adj').read())}",
      "    open(d + '/v.tmp', 'w').write(json.dumps(v)); os.rename(d + '/v.tmp', d + '/v')",
      '    time.sleep(0.1)',
    ].join('\n');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-prctl-'));
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', program, dir]).trim());
    try {
      const values = () => JSON.parse(fs.readFileSync(path.join(dir, 'v'), 'utf8'));
      waitFor('the values', () => fs.existsSync(path.join(dir, 'v')));
      expect(values()).toEqual({ thp: 1, merge: 1, oom: 777 });
      expect(checkpointKillRestart(pid)).toBe(pid);
      fs.rmSync(path.join(dir, 'v'));
      waitFor('the values after restart', () => fs.existsSync(path.join(dir, 'v')));
      expect(values()).toEqual({ thp: 1, merge: 1, oom: 777 });
    } finally {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a file replaced while the process was gone is named in a warning; one appended to is not (sweep 10)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-replaced-'));
    const file = path.join(dir, 'data');
    const lines = (prefix: string) =>
      Array.from({ length: 100 }, (_, i) => `${prefix}${String(i).padStart(4, '0')}\n`).join('');
    fs.writeFileSync(file, lines('old'));
    const reader = `import os, time\nfd = os.open(${JSON.stringify(file)}, os.O_RDONLY)\nos.read(fd, 8)\nwhile True: time.sleep(1)`;
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', reader]).trim());
    try {
      waitFor('the file open', () =>
        fs.readdirSync(`/proc/${pid}/fd`).some((fd) => {
          try {
            return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === file;
          } catch {
            return false;
          }
        }),
      );
      const img = imagePath();
      ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
      waitFor('the process gone', () => !isAlive(pid));
      // Appended to: the same file, no warning.
      fs.appendFileSync(file, 'more\n');
      const same = ckpt(['restart', img, '-d']);
      expect(same.code, same.stderr).toBe(0);
      expect(same.stderr).not.toContain('is not the file');
      process.kill(pid, 'SIGKILL');
      waitFor('the restored process gone', () => !isAlive(pid));
      // Replaced (mv and a new file): the warning names it.
      fs.renameSync(file, `${file}.old`);
      fs.writeFileSync(file, lines('new'));
      const other = ckpt(['restart', img, '-d']);
      expect(other.code, other.stderr).toBe(0);
      expect(other.stderr).toMatch(
        new RegExp(
          `pid ${pid}: ${file} is not the file it had open at checkpoint \\(replaced since: inode \\d+, now \\d+\\); it reopens the file there now, at offset 8`,
        ),
      );
    } finally {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--frozen leaves the restored process stopped', () => {
    const f = start('counter');
    while (f.count!() < 3) sleepSync(20);
    const pid = checkpointKillRestart(f.pid, ['--frozen']);
    expect(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0]).toBe('T');
    expectStoppedUntilSigcont(f, pid);
    f.go();
    expect(f.waitResult()).toMatch(/^PASS/);
  });
});

describe('failures leave nothing behind', () => {
  it('pid 1 and a kernel thread are refused saying why, and a missing pid is named once', () => {
    for (const [pid, why] of [
      ['1', /cannot freeze pid 1: .*EPERM.*init of ckpt's pid namespace/],
      ['2', /cannot freeze pid 2: .*EPERM.*kernel thread/],
    ] as const) {
      const r = ckpt(['checkpoint', pid, '-o', imagePath()]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(why);
    }
    const r = ckpt(['checkpoint', '4194000', '-o', imagePath()]);
    expect(r.stderr.trim()).toBe(
      'ckpt: error: process 4194000 does not exist (it may have exited)',
    );
  });

  it('restart with the pid taken: clear error, suggestion, nothing left; --no-pids works', () => {
    const f = start('counter');
    const img = imagePath();
    ckptOk(['checkpoint', String(f.pid), '-o', img]); // leave running: the pid stays taken
    const r = ckpt(['restart', img, '-d']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`pid ${f.pid} is already in use.*--no-pids`));
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    const pid = Number(ckptOk(['restart', img, '-d', '--no-pids']).trim());
    expect(pid).not.toBe(f.pid);
    expect(isAlive(pid)).toBe(true);
    process.kill(pid, 'SIGKILL');
  });

  it('a refused checkpoint leaves an image that says why, which restart refuses up front', () => {
    // A thread with an fd table of its own (unshare(CLONE_FILES)): refused
    // once frozen, before any state is saved.
    const script = [
      'import ctypes,threading,time',
      'def own(): ctypes.CDLL(None).unshare(0x400); time.sleep(60)',
      'threading.Thread(target=own).start()',
      'time.sleep(60)',
    ].join('\n');
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', script]).trim());
    try {
      while (fs.readdirSync(`/proc/${pid}/task`).length < 2) sleepSync(10);
      sleepSync(100);
      const img = imagePath();
      const c = ckpt(['checkpoint', String(pid), '-o', img, '--kill']);
      expect(c.code).toBe(1);
      const why = `thread \\d+ of pid ${pid} has an fd table \\(unshare\\(CLONE_FILES\\)\\) of its own`;
      expect(c.stderr).toMatch(new RegExp(why));
      expect(isAlive(pid)).toBe(true);
      // The original still holds the pid: the image's own error comes
      // first, not a clash over the pid.
      const r = ckpt(['restart', img, '-d']);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(
        new RegExp(`ends with the error of a failed checkpoint: \\[ENOTSUP\\] ${why}`),
      );
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });

  it('a process whose seccomp filter hands calls to a supervisor is refused, and left running', () => {
    // getppid (110) goes to a user-space supervisor (SECCOMP_RET_USER_NOTIF); all else is allowed.
    const script = [
      'import ctypes,time',
      'class F(ctypes.Structure): _fields_=[("code",ctypes.c_ushort),("jt",ctypes.c_ubyte),("jf",ctypes.c_ubyte),("k",ctypes.c_uint)]',
      'class P(ctypes.Structure): _fields_=[("len",ctypes.c_ushort),("filter",ctypes.POINTER(F))]',
      'f=(F*4)(F(0x20,0,0,0),F(0x15,0,1,110),F(6,0,0,0x7fc00000),F(6,0,0,0x7fff0000))',
      'assert ctypes.CDLL(None).prctl(22,2,ctypes.byref(P(4,f)),0,0)==0',
      'time.sleep(60)',
    ].join('\n');
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', script]).trim());
    try {
      waitFor('the filter installed', () =>
        /^Seccomp:\s+2$/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8')),
      );
      const img = imagePath();
      const c = ckpt(['checkpoint', String(pid), '-o', img, '--kill']);
      expect(c.code).toBe(1);
      expect(c.stderr).toMatch(
        new RegExp(
          `pid ${pid} runs under a seccomp filter that hands system calls to a supervisor`,
        ),
      );
      expect(isAlive(pid)).toBe(true);
      expect(tracerPid(pid)).toBe(0);
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });

  it('a process with an io_uring polling thread is refused at once, naming the thread, and left running', () => {
    // io_uring_setup (425) with IORING_SETUP_SQPOLL: the kernel starts a
    // thread iou-sqp-PID among the process's threads, which never runs user code.
    const script = [
      'import ctypes,time',
      'p=(ctypes.c_uint32*30)(); p[2]=2; p[4]=1000',
      'assert ctypes.CDLL(None).syscall(425,8,p)>=0',
      'time.sleep(60)',
    ].join('\n');
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', script]).trim());
    try {
      const comms = () =>
        fs
          .readdirSync(`/proc/${pid}/task`)
          .map((t) => fs.readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim());
      waitFor('the polling thread', () => comms().some((c) => c.startsWith('iou-sqp-')));
      const c = ckpt(['checkpoint', String(pid), '-o', imagePath(), '--kill'], {
        timeoutMs: 30_000,
      });
      expect(c.signal).toBeNull();
      expect(c.code).toBe(1);
      expect(c.stderr).toMatch(
        new RegExp(`pid ${pid} thread \\d+ \\(iou-sqp-${pid}\\) is an io_uring kernel thread`),
      );
      expect(isAlive(pid)).toBe(true);
      expect(tracerPid(pid)).toBe(0);
      expect(fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]![0]).toMatch(/[RS]/);
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });

  it('a corrupted image is refused before anything is created', () => {
    const f = start('counter');
    const img = imagePath();
    ckptOk(['checkpoint', String(f.pid), '-o', img, '--kill']);
    const good = fs.readFileSync(img);
    // Inside the page data, and in the header's arch and kernel constants
    // (which must not be taken for another machine's image).
    for (const at of [good.length - 5000, 20, 40]) {
      const data = Buffer.from(good);
      data[at]! ^= 0x40;
      fs.writeFileSync(img, data);
      const r = ckpt(['restart', img, '-d']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/checksum mismatch/);
      expect(r.stderr).not.toMatch(/taken on|kernel constant/);
      sleepSync(50);
      expect(isAlive(f.pid)).toBe(false);
    }
  });

  it('a mapped file gone at restart fails naming it and why, and nothing is left', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-mapped-'));
    try {
      const file = path.join(dir, 'shared.dat');
      fs.writeFileSync(file, 'data\n');
      const map = `import mmap, time; f = open(${JSON.stringify(file)}, "r+b"); m = mmap.mmap(f.fileno(), 0); f.close(); time.sleep(100)`;
      const pid = Number(ckptOk(['run', '--', 'python3', '-c', map]).trim());
      waitFor('the mapping', () => fs.readFileSync(`/proc/${pid}/maps`, 'utf8').includes(file));
      const img = imagePath();
      ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
      waitFor('the process gone', () => !isAlive(pid));
      fs.rmSync(file);
      const r = ckpt(['restart', img, '-d']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(
          `cannot open ${file} in pid ${pid} to map it at 0x[0-9a-f]+-0x[0-9a-f]+: ENOENT \\(no such file or directory\\); restart needs every file the process had mapped, at the same path`,
        ),
      );
      expect(isAlive(pid)).toBe(false);
      fs.rmSync(path.dirname(img), { recursive: true, force: true });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a program changed since the checkpoint is refused at restart, naming it, and nothing runs', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-changed-'));
    try {
      // A copy of sleep, replaced after the checkpoint as an upgrade would.
      const bin = path.join(dir, 'sleep');
      fs.copyFileSync(
        execFileSync('sh', ['-c', 'command -v sleep'], { encoding: 'utf8' }).trim(),
        bin,
      );
      fs.chmodSync(bin, 0o755);
      const f = { pid: Number(ckptOk(['run', '--', bin, '1000']).trim()) };
      fixtures.leftovers.push(f.pid);
      const img = imagePath();
      ckptOk(['checkpoint', String(f.pid), '-o', img, '--kill']);
      waitFor('the counter gone', () => !isAlive(f.pid));
      const upgraded = `${bin}.new`;
      fs.copyFileSync(bin, upgraded);
      fs.appendFileSync(upgraded, 'x');
      fs.renameSync(upgraded, bin);
      const r = ckpt(['restart', img, '-d']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(
        new RegExp(
          `pid ${f.pid}: ${bin}, mapped at 0x[0-9a-f]+-0x[0-9a-f]+, has changed since the checkpoint \\(size (\\d+) -> \\d+, modified [^)]+\\); the process would run on a different file`,
        ),
      );
      expect(isAlive(f.pid)).toBe(false);
      fs.rmSync(path.dirname(img), { recursive: true, force: true });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a tree that holds ckpt itself is refused saying so, and left running', () => {
    const img = imagePath();
    // The shell checkpoints itself: ckpt is its child, inside the tree.
    const r = spawnSync(
      'bash',
      [
        '-c',
        `"${process.execPath}" "${CKPT_BIN}" checkpoint $$ -o ${img} --kill; echo "rc=$? alive"`,
      ],
      { encoding: 'utf8' },
    );
    expect(r.stdout.trim()).toBe('rc=1 alive');
    expect(r.stderr).toMatch(
      /^ckpt: error: ckpt itself \(pid \d+\) is in the tree of pid \d+; run ckpt from outside it/,
    );
    fs.rmSync(path.dirname(img), { recursive: true, force: true });
  });

  it('a debugger whose tracee is outside the tree is refused naming both, and both run on', () => {
    // The python "debugger" seizes a process that is not its child.
    const tracee = Number(ckptOk(['run', '--', 'sleep', '1000']).trim());
    const script = [
      'import ctypes, sys, time',
      'libc = ctypes.CDLL(None, use_errno=True)',
      'libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]',
      'if libc.ptrace(0x4206, int(sys.argv[1]), None, None) != 0: sys.exit(1)',
      'time.sleep(1000)',
    ].join('\n');
    const tracer = Number(ckptOk(['run', '--', 'python3', '-c', script, String(tracee)]).trim());
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-tracer-'));
    try {
      waitFor('the seize', () => tracerPid(tracee) === tracer);
      const r = ckpt(['checkpoint', String(tracer), '-o', path.join(dir, 'img'), '--kill']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(
        `pid ${tracer} (python3) traces pid ${tracee} (sleep), which is outside the checkpointed tree; restart could not attach it again`,
      );
      expect(isAlive(tracer)).toBe(true);
      expect(tracerPid(tracee)).toBe(tracer);
    } finally {
      for (const pid of [tracer, tracee]) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a process traced by a debugger is refused naming the tracer, and both run on', () => {
    // A python "debugger": seizes its child (PTRACE_SEIZE) and keeps it.
    const script = [
      'import ctypes, os, sys, time',
      'pid = os.fork()',
      'if pid == 0:',
      '    time.sleep(1000)',
      '    os._exit(0)',
      'libc = ctypes.CDLL(None, use_errno=True)',
      'libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]',
      'if libc.ptrace(0x4206, pid, None, None) != 0: sys.exit(1)',
      'print(pid, flush=True)',
      'time.sleep(1000)',
    ].join('\n');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-traced-'));
    const out = path.join(dir, 'out');
    const tracer = Number(ckptOk(['run', '--stdout', out, '--', 'python3', '-c', script]).trim());
    try {
      waitFor('the tracee', () => /^\d+\n/.test(fs.readFileSync(out, 'utf8')));
      const tracee = Number(fs.readFileSync(out, 'utf8').trim());
      expect(tracerPid(tracee)).toBe(tracer);
      const r = ckpt(['checkpoint', String(tracee), '-o', path.join(dir, 'img'), '--kill']);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(
        `cannot freeze pid ${tracee}: it is already traced by pid ${tracer} (python3: a debugger or another ckpt`,
      );
      expect(isAlive(tracee)).toBe(true);
      expect(tracerPid(tracee)).toBe(tracer);
      // The tracer with its tracee: the same refusal.
      const both = ckpt(['checkpoint', String(tracer), '-o', path.join(dir, 'img'), '--kill']);
      expect(both.code).not.toBe(0);
      expect(both.stderr).toContain(`already traced by pid ${tracer} (python3`);
      expect(isAlive(tracer)).toBe(true);
    } finally {
      spawnSync('pkill', ['-KILL', '-P', String(tracer)]);
      try {
        process.kill(tracer, 'SIGKILL');
      } catch {
        // gone
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
