/**
 * Real programs nobody wrote for ckpt, through checkpoint --kill and
 * restart -d:
 * - Node.js itself (the runtime running these tests), with its threads
 *   (V8's and libuv's), epoll and eventfds, pipes, JIT code and timers: a
 *   script counts into a file on a timer and counts on, with no number
 *   missing or repeated;
 * - `tail -f`, which follows its file with inotify: lines written after
 *   the restart are printed, once each;
 * - `python3 -m http.server`: its listening socket comes back on its port
 *   and it serves again;
 * - a python3 asyncio loop (its self-pipe is a unix socketpair) counts on;
 * - `script`, which runs a shell on a pseudo-terminal it holds the master
 *   of: the shell counts on through a new pty, with the window size it set
 *   and the pty as its controlling terminal (foreground group kept), also
 *   for a job it started before the checkpoint;
 * - a python3 program holding an flock lock, an fcntl record lock and an
 *   open-file-description lock: another process finds each held again
 *   after the restart (and free while the program was gone), and a restart
 *   while someone else took one fails, leaving nothing behind;
 * - a python3 whose executable and a library it loaded were deleted while
 *   it runs (as a package upgrade replaces them): both come back as the
 *   same deleted files, and the library's code runs on;
 * - a program exec'd from a memfd it still holds open (as runc re-execs
 *   itself) counts on, its exe and the fd the same memfd again; a program
 *   holding a memfd it has not exec'd yet can exec it after the restart;
 * - a program whose working directory was deleted comes back in a deleted
 *   directory of the same name;
 * - a python3 holding a PSI trigger (/proc/pressure/cpu written to) is
 *   refused and runs on; one reading /proc/pressure/memory reads on;
 * - a shell pipeline through a FIFO (mkfifo) with lines waiting in it: the
 *   reader reads on, no line lost or repeated;
 * - a shell whose loops fork short-lived children all the time (children
 *   exit and are reaped while ckpt scans the tree) is checkpointed every
 *   time it is asked, left running, and counts on after a restart.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ckpt, ckptOk } from '../support/ckpt.js';
import { isAlive, readOr } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireCommand } from '../support/prereq.js';
import { childrenOf, nsenter, statIds, waitFor } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

function numbers(file: string): number[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number);
}

/**
 * Start `cmd` with `ckpt run`; once it has written 5 numbers to `out`,
 * checkpoint it with --kill and restart it: it must count on, with no
 * number missing or repeated. `check` looks at the running program first.
 */
function expectCountsOnAfterRestart(
  cmd: string[],
  out: string,
  check?: (pid: number) => void,
): void {
  const pid = Number(ckptOk(['run', '--', ...cmd]).trim());
  // ckpt run starts it in a session and process group of its own: -pid
  // also kills the children it left running.
  leftovers.push(pid, -pid);
  waitFor('counting', () => fs.existsSync(out) && numbers(out).length >= 5, 20_000);
  check?.(pid);
  const img = tmpImage();
  ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
  waitFor('the original gone', () => !isAlive(pid));
  const atKill = numbers(out).length;
  expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
  waitFor('counting on', () => numbers(out).length >= atKill + 10, 20_000);
  const seen = numbers(out);
  expect(seen).toEqual(seen.map((_, i) => i + 1));
}

describe('node', () => {
  it('a Node.js timer loop continues after checkpoint --kill and restart', () => {
    const out = path.join(tmpDir('ckpt-node-'), 'out');
    const script = `let i = 0; const fs = require('fs'); setInterval(() => fs.appendFileSync(${JSON.stringify(out)}, ++i + '\\n'), 50);`;
    expectCountsOnAfterRestart([process.execPath, '-e', script], out, (pid) =>
      expect(fs.readdirSync(`/proc/${pid}/task`).length).toBeGreaterThan(1),
    );
  });
});

describe('tail -f', () => {
  it('follows its file on after the restart (inotify)', () => {
    const dir = tmpDir('ckpt-tail-');
    const log = path.join(dir, 'log');
    const out = path.join(dir, 'out');
    fs.writeFileSync(log, 'one\n');
    const sh = Number(ckptOk(['run', '--', 'sh', '-c', `exec tail -f ${log} > ${out}`]).trim());
    leftovers.push(sh);
    // The shell may not have made `out` yet when ckpt run returns.
    waitFor('tail printing', () => readOr(out) === 'one\n');
    fs.appendFileSync(log, 'two\n');
    waitFor('tail following', () => readOr(out) === 'one\ntwo\n');
    const img = tmpImage();
    ckptOk(['checkpoint', String(sh), '-o', img, '--kill']);
    waitFor('the original gone', () => !isAlive(sh));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(sh);
    fs.appendFileSync(log, 'three\n');
    waitFor(
      'tail following after the restart',
      () => fs.readFileSync(out, 'utf8') === 'one\ntwo\nthree\n',
    );
  });
});

describe('python3 -m http.server', () => {
  it('serves again on its port after the restart', async () => {
    const dir = tmpDir('ckpt-http-');
    fs.writeFileSync(path.join(dir, 'hello.txt'), 'hello from before\n');
    const port = 20000 + (process.pid % 20000);
    const url = `http://127.0.0.1:${port}/hello.txt`;
    const pid = Number(
      ckptOk([
        'run',
        '--',
        'python3',
        '-m',
        'http.server',
        String(port),
        '--bind',
        '127.0.0.1',
        '--directory',
        dir,
      ]).trim(),
    );
    leftovers.push(pid);
    const get = async () => {
      try {
        return await (await fetch(url, { signal: AbortSignal.timeout(2000) })).text();
      } catch {
        return undefined;
      }
    };
    let body: string | undefined;
    for (let i = 0; i < 100 && body === undefined; i++) {
      body = await get();
      if (body === undefined) await new Promise((r) => setTimeout(r, 50));
    }
    expect(body).toBe('hello from before\n');
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the server gone', () => !isAlive(pid));
    expect(await get()).toBeUndefined();
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    fs.writeFileSync(path.join(dir, 'hello.txt'), 'hello from after\n');
    expect(await get()).toBe('hello from after\n');
  });
});

describe('python3 asyncio', () => {
  it('an event loop counts on after the restart', () => {
    const out = path.join(tmpDir('ckpt-asyncio-'), 'out');
    const script = [
      'import asyncio',
      'async def main():',
      '    i = 0',
      '    while True:',
      '        i += 1',
      `        open(${JSON.stringify(out)}, "a").write(f"{i}\\n")`,
      '        await asyncio.sleep(0.05)',
      'asyncio.run(main())',
    ].join('\n');
    expectCountsOnAfterRestart(['python3', '-c', script], out);
  });
});

describe('python3 under a seccomp filter', () => {
  it('counts on after a restart, and the filter still refuses what it refused', () => {
    const out = path.join(tmpDir('ckpt-seccomp-'), 'out');
    // getppid (110) fails with errno 42 (SECCOMP_RET_ERRNO | 42); all else is allowed.
    // Each line is the count, written only while getppid fails that way.
    const script = [
      'import ctypes,os,time',
      'class F(ctypes.Structure): _fields_=[("code",ctypes.c_ushort),("jt",ctypes.c_ubyte),("jf",ctypes.c_ubyte),("k",ctypes.c_uint)]',
      'class P(ctypes.Structure): _fields_=[("len",ctypes.c_ushort),("filter",ctypes.POINTER(F))]',
      'f=(F*4)(F(0x20,0,0,0),F(0x15,0,1,110),F(6,0,0,0x50000|42),F(6,0,0,0x7fff0000))',
      'assert ctypes.CDLL(None).prctl(22,2,ctypes.byref(P(4,f)),0,0)==0',
      'i=0',
      'while True:',
      '    i+=1',
      // glibc's getppid cannot fail: it returns the raw -errno.
      '    v=os.getppid(); r=str(i) if v==-42 else f"getppid gave {v}"',
      `    open(${JSON.stringify(out)},"a").write(r+"\\n")`,
      '    time.sleep(0.05)',
    ].join('\n');
    expectCountsOnAfterRestart(['python3', '-c', script], out, (pid) =>
      expect(fs.readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(/^Seccomp:\s+2$/m),
    );
  });
});

describe('scheduling attributes', () => {
  it('nice, policy, CPU affinity and I/O priority of a process and of a thread hold after a restart', () => {
    const out = path.join(tmpDir('ckpt-sched-'), 'out');
    // Main: nice 7, SCHED_BATCH, bound to CPU 1, I/O class best-effort
    // level 5; a thread: nice 3, CPU 0. Each line is the count, written only
    // while every value is still what was set.
    const script = [
      'import ctypes,os,threading,time',
      'libc=ctypes.CDLL(None,use_errno=True)',
      'os.sched_setaffinity(0,{1}); os.setpriority(os.PRIO_PROCESS,0,7)',
      'os.sched_setscheduler(0,os.SCHED_BATCH,os.sched_param(0))',
      'assert libc.syscall(251,1,0,(2<<13)|5)==0',
      'tid=[0]',
      'def thread():',
      '    tid[0]=threading.get_native_id(); os.sched_setaffinity(0,{0}); os.setpriority(os.PRIO_PROCESS,tid[0],3)',
      '    while True: time.sleep(1)',
      'threading.Thread(target=thread,daemon=True).start()',
      'while not tid[0]: time.sleep(0.01)',
      'i=0',
      'while True:',
      '    i+=1',
      '    got=(os.getpriority(os.PRIO_PROCESS,0),os.sched_getscheduler(0),os.sched_getaffinity(0),libc.syscall(252,1,0),os.getpriority(os.PRIO_PROCESS,tid[0]),os.sched_getaffinity(tid[0]))',
      '    want=(7,os.SCHED_BATCH,{1},(2<<13)|5,3,{0})',
      `    open(${JSON.stringify(out)},"a").write((str(i) if got==want else repr(got))+"\\n")`,
      '    time.sleep(0.05)',
    ].join('\n');
    expectCountsOnAfterRestart(['python3', '-c', script], out);
  });
});

describe('pidfds', () => {
  it('a parent holding a pidfd of its child counts on, and the pidfd still reaches that child', () => {
    const dir = tmpDir('ckpt-pidfd-');
    const out = path.join(dir, 'out');
    const done = path.join(dir, 'done');
    // The parent counts while the child lives (poll on the pidfd: not
    // readable); once it is readable, it reaps the child through the pidfd
    // (waitid P_PIDFD) and writes the child's pid and exit status.
    const script = [
      'import os,select,time',
      'c=os.fork()',
      'if c==0:',
      '    while True: time.sleep(1)',
      'fd=os.pidfd_open(c)',
      'i=0',
      'while True:',
      '    if select.select([fd],[],[],0)[0]:',
      '        r=os.waitid(os.P_PIDFD,fd,os.WEXITED)',
      // Written whole, then renamed: the test waits for the name.
      `        open(${JSON.stringify(`${done}.tmp`)},"w").write(f"{r.si_pid} {r.si_status}"); os.rename(${JSON.stringify(`${done}.tmp`)},${JSON.stringify(done)})`,
      '        break',
      '    i+=1',
      `    open(${JSON.stringify(out)},"a").write(f"{i}\\n")`,
      '    time.sleep(0.05)',
    ].join('\n');
    let child = 0;
    expectCountsOnAfterRestart(['python3', '-c', script], out, (pid) => {
      [child] = childrenOf(pid);
    });
    expect(child).toBeGreaterThan(0);
    process.kill(child, 'SIGTERM');
    waitFor('the parent to reap its child through the pidfd', () => fs.existsSync(done));
    expect(fs.readFileSync(done, 'utf8')).toBe(`${child} 15`);
  });

  it('a pidfd for a process outside the tree is refused, naming it, and the process runs on', () => {
    const pid = Number(
      ckptOk([
        'run',
        '--',
        'python3',
        '-c',
        'import os,time\nfd=os.pidfd_open(1)\nos.dup2(fd,9)\nos.close(fd)\ntime.sleep(60)',
      ]).trim(),
    );
    leftovers.push(pid);
    waitFor('the pidfd open', () => {
      try {
        return fs.readlinkSync(`/proc/${pid}/fd/9`) === 'anon_inode:[pidfd]';
      } catch {
        return false;
      }
    });
    const r = ckpt(['checkpoint', String(pid), '-o', tmpImage(), '--kill']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`pid ${pid} fd 9: a pidfd for pid 1, which is not part of the checkpointed tree`),
    );
    expect(isAlive(pid)).toBe(true);
  });
});

describe('/proc/self kept open', () => {
  it('restored with --no-pids, the copy reads its own /proc/PID/status, not the original’s', () => {
    const dir = tmpDir('ckpt-procself-');
    // Each line says whether the status file still describes the process itself.
    const script = [
      'import os,time',
      'f=open("/proc/self/status")',
      'while True:',
      '    f.seek(0); pid=int([l for l in f.read().splitlines() if l.startswith("Pid:")][0].split()[1])',
      `    open(f"${dir}/out.{os.getpid()}","a").write("ok\\n" if pid==os.getpid() else f"status of {pid}\\n")`,
      '    time.sleep(0.05)',
    ].join('\n');
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', script]).trim());
    leftovers.push(pid);
    waitFor('the original writing', () => fs.existsSync(path.join(dir, `out.${pid}`)));
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img]);
    const copy = Number(ckptOk(['restart', img, '-d', '--no-pids']).trim());
    leftovers.push(copy);
    expect(copy).not.toBe(pid);
    const out = path.join(dir, `out.${copy}`);
    waitFor(
      'the copy writing',
      () => fs.existsSync(out) && fs.readFileSync(out, 'utf8').split('\n').length > 5,
    );
    expect(new Set(fs.readFileSync(out, 'utf8').trim().split('\n'))).toEqual(new Set(['ok']));
  });
});

describe('sockets made but not used yet', () => {
  it('unbound IPv4/IPv6/unix/netlink sockets and an unconnected unix datagram socket come back as they were', () => {
    const dir = tmpDir('ckpt-idle-sockets-');
    const out = path.join(dir, 'out');
    const dgram = path.join(dir, 'dgram.sock');
    // Counts while every socket is still what it was; once `go` exists it
    // binds and listens with the unbound TCP socket (which fails if the
    // restart had bound it) and reports what arrived on the datagram socket.
    const script = [
      'import os,socket,time',
      'S=socket.socket',
      'tcp=S(socket.AF_INET,socket.SOCK_STREAM); udp6=S(socket.AF_INET6,socket.SOCK_DGRAM)',
      'ux=S(socket.AF_UNIX,socket.SOCK_STREAM); nl=S(socket.AF_NETLINK,socket.SOCK_RAW,9)',
      `dg=S(socket.AF_UNIX,socket.SOCK_DGRAM); dg.bind(${JSON.stringify(dgram)}); dg.setblocking(False)`,
      'def same():',
      '    return (tcp.getsockname()[1]==0 and udp6.getsockname()[1]==0 and ux.getsockname() in ("", b"")',
      `            and dg.getsockname()==${JSON.stringify(dgram)} and nl.family==socket.AF_NETLINK and tcp.type==socket.SOCK_STREAM)`,
      'i=0',
      `while not os.path.exists(${JSON.stringify(path.join(dir, 'go'))}):`,
      '    i+=1',
      `    open(${JSON.stringify(out)},"a").write((str(i) if same() else "changed")+"\\n")`,
      '    time.sleep(0.05)',
      'tcp.bind(("127.0.0.1",0)); tcp.listen(1)',
      'dg.settimeout(20)',
      // Written whole, then renamed: the test waits for the name.
      'm="listening "+dg.recv(100).decode()',
      `open(${JSON.stringify(path.join(dir, 'done.tmp'))},"w").write(m); os.rename(${JSON.stringify(path.join(dir, 'done.tmp'))},${JSON.stringify(path.join(dir, 'done'))})`,
    ].join('\n');
    expectCountsOnAfterRestart(['python3', '-c', script], out);
    const client = fs.openSync(path.join(dir, 'go'), 'w');
    fs.closeSync(client);
    execFileSync('python3', [
      '-c',
      `import socket; socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM).sendto(b"hello",${JSON.stringify(dgram)})`,
    ]);
    waitFor('the restored program to use its sockets', () => fs.existsSync(path.join(dir, 'done')));
    expect(fs.readFileSync(path.join(dir, 'done'), 'utf8')).toBe('listening hello');
  });
});

describe('parent-death signals', () => {
  it('a root with one survives restart -d, and its child keeps its own', () => {
    const out = path.join(tmpDir('ckpt-pdeath-'), 'out');
    // The root asks for SIGTERM when its parent (outside the tree) dies; its
    // child for SIGUSR1 when the root dies, and counts while it still has it.
    const script = [
      'import ctypes,os,time',
      'libc=ctypes.CDLL(None)',
      'libc.prctl(1,15,0,0,0)',
      'if os.fork()==0:',
      '    libc.prctl(1,10,0,0,0)',
      '    i=0',
      '    while True:',
      '        v=ctypes.c_int(0); libc.prctl(2,ctypes.byref(v),0,0,0); i+=1',
      `        open(${JSON.stringify(out)},"a").write((str(i) if v.value==10 else f"pdeath {v.value}")+"\\n")`,
      '        time.sleep(0.05)',
      'while True: time.sleep(1)',
    ].join('\n');
    expectCountsOnAfterRestart(['python3', '-c', script], out);
  });
});

describe('a shell forking short-lived children', () => {
  it('is checkpointed while children come and go, and counts on after a restart', () => {
    const out = path.join(tmpDir('ckpt-churn-'), 'out');
    const script = [
      '(while :; do sleep 0.01; done) &',
      '(while :; do /bin/true; done) &',
      `i=0; while :; do i=$((i+1)); echo $i >> ${out}; sleep 0.02; done`,
    ].join('\n');
    expectCountsOnAfterRestart(['bash', '-c', script], out, (pid) => {
      // Each scan may find a child that exits, or a zombie that its parent
      // reaps, before it is frozen: every checkpoint must still succeed.
      for (let i = 0; i < 15; i++) {
        ckptOk(['checkpoint', String(pid), '-o', tmpImage(), '--leave-running']);
      }
    });
  });
});

/** Controlling terminal (tty_nr) and its foreground group (tpgid) of `pid`, from /proc/PID/stat. */
function terminalOf(pid: number): { tty: number; tpgid: number } {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { tty: Number(f[4]), tpgid: Number(f[5]) };
}

/** PID's command line with spaces between its arguments; '' once it is gone. */
function cmdlineOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return '';
  }
}

/** Every task of the session SID, one per line with its state and parent, for failure messages. */
function sessionListing(sid: number): string {
  const rows: string[] = [];
  for (const name of fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    try {
      const ids = statIds(Number(name));
      if (ids.sid === sid)
        rows.push(`${name} ${ids.state} ppid ${ids.ppid} ${cmdlineOf(Number(name))}`);
    } catch {
      // gone meanwhile
    }
  }
  return `session ${sid}:\n${rows.join('\n')}`;
}

/**
 * `script` running `bash -c LOOP` on a new pty, its typescript in a fresh
 * `log`; `lines()` are the log's lines that match `pattern`. script runs
 * its command with $SHELL -c (sh when unset, as under CI, and dash does
 * not exec the command): with bash, bash -c execs the loop, so script's
 * child is the loop's shell whatever the caller's env.
 */
function startScript(loop: string, pattern: RegExp) {
  const log = path.join(tmpDir('ckpt-script-'), 'log');
  const pid = Number(
    ckptOk([
      'run',
      '--',
      'env',
      'SHELL=/bin/bash',
      'script',
      '-qfc',
      `bash -c '${loop}'`,
      log,
    ]).trim(),
  );
  leftovers.push(pid, -pid);
  const lines = () =>
    fs.existsSync(log)
      ? fs
          .readFileSync(log, 'utf8')
          .split(/\r?\n/)
          .filter((l) => pattern.test(l))
      : [];
  return { pid, lines };
}

describe('script (a pseudo-terminal)', () => {
  it('the shell on its pty counts on after a restart, with its window size and controlling terminal', () => {
    const loop =
      'sleep 1000 & stty cols 123 rows 45; i=0; while :; do i=$((i+1)); echo "$i $(stty size)"; sleep 0.1; done';
    const { pid, lines } = startScript(loop, /^\d+ /);
    waitFor('counting on the pty', () => lines().length >= 5, 20_000);
    const [shell] = childrenOf(pid);
    if (shell === undefined) throw new Error(`script (pid ${pid}) has no child`);
    // The shell leads its own session (script's child), on the pty.
    leftovers.push(-shell);
    // The background sleep: a member of the session other than its leader.
    const member = childrenOf(shell).find((p) => cmdlineOf(p) === 'sleep 1000');
    if (member === undefined) {
      throw new Error(
        `the shell (pid ${shell}) has no 'sleep 1000' child: ${sessionListing(shell)}`,
      );
    }
    leftovers.push(member);
    const before = terminalOf(shell);
    expect(before.tty).not.toBe(0);
    expect(before.tpgid).toBe(statIds(shell).pgid);
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the original gone', () => ![pid, shell, member].some(isAlive));
    const atKill = lines().length;
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    waitFor('counting on after the restart', () => lines().length >= atKill + 10, 20_000);
    const seen = lines().map((l) => l.split(' '));
    expect(seen.map(([n]) => Number(n))).toEqual(seen.map((_, i) => i + 1));
    for (const [, rows, cols] of seen) expect(`${rows} ${cols}`).toBe('45 123');
    const after = terminalOf(shell);
    expect(after.tty).not.toBe(0);
    expect(after.tpgid).toBe(before.tpgid);
    // The other member of the session is back under its pid, still the
    // shell's child, with the pty as its controlling terminal too (it could
    // open /dev/tty).
    expect(isAlive(member), `sleep 1000 (pid ${member}): ${sessionListing(shell)}`).toBe(true);
    expect(cmdlineOf(member)).toBe('sleep 1000');
    expect(statIds(member).ppid).toBe(shell);
    expect(terminalOf(member).tty).toBe(after.tty);
  });
  it('a program talking to its terminal through /dev/tty (emacs -nw in screen) keeps it', () => {
    const loop =
      'exec 4<>/dev/tty; i=0; while :; do i=$((i+1)); echo "tty $i $(stty size <&4)" >&4; sleep 0.1; done';
    const { pid, lines } = startScript(loop, /^tty \d+ /);
    waitFor('counting through /dev/tty', () => lines().length >= 5, 20_000);
    const [shell] = childrenOf(pid);
    if (shell === undefined) throw new Error(`script (pid ${pid}) has no child`);
    leftovers.push(-shell);
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the original gone', () => ![pid, shell].some(isAlive));
    const atKill = lines().length;
    const r = ckpt(['restart', img, '-d']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('/dev/tty');
    waitFor('counting on after the restart', () => lines().length >= atKill + 10, 20_000);
    const seen = lines().map((l) => l.split(' '));
    expect(seen.map(([, n]) => Number(n))).toEqual(seen.map((_, i) => i + 1));
    expect(fs.readlinkSync(`/proc/${shell}/fd/4`)).toBe('/dev/tty');
  });
});

describe('a FIFO between two processes of the tree', () => {
  it('carries the lines waiting in it on after a restart', () => {
    const dir = tmpDir('ckpt-fifo-');
    const fifo = path.join(dir, 'fifo');
    const out = path.join(dir, 'out');
    execFileSync('mkfifo', [fifo]);
    // The writer is faster than the reader: lines wait in the FIFO.
    const script = [
      `(i=0; while :; do i=$((i+1)); echo $i; sleep 0.02; done) > ${fifo} &`,
      `while read l; do echo $l >> ${out}; sleep 0.05; done < ${fifo}`,
    ].join('\n');
    expectCountsOnAfterRestart(['bash', '-c', script], out);
  });
});

describe('file locks', () => {
  const HOLD = `
import fcntl, struct, sys, time
d = sys.argv[1]
a = open(d + '/a', 'w+'); b = open(d + '/b', 'w+'); c = open(d + '/c', 'w+')
fcntl.flock(a, fcntl.LOCK_EX)
fcntl.lockf(b, fcntl.LOCK_EX, 10, 5)
fcntl.fcntl(c, 37, struct.pack('hhqqi4x', fcntl.F_RDLCK, 0, 0, 0, 0))  # F_OFD_SETLK
i = 0
while True:
    i += 1
    with open(d + '/out', 'a') as o: o.write(str(i) + '\\n')
    time.sleep(0.05)
`;
  /** Which of the held locks another process could take now. */
  const TRY = `
import fcntl, struct, sys
d = sys.argv[1]; res = []
def attempt(name, fn):
    try:
        fn(); res.append(name + ':free')
    except OSError:
        res.append(name + ':held')
attempt('flock', lambda: fcntl.flock(open(d + '/a', 'r+'), fcntl.LOCK_EX | fcntl.LOCK_NB))
attempt('range', lambda: fcntl.lockf(open(d + '/b', 'r+'), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 7))
attempt('beyond', lambda: fcntl.lockf(open(d + '/b', 'r+'), fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 20))
attempt('ofd', lambda: fcntl.fcntl(open(d + '/c', 'r+'), 37, struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, 0, 0, 0)))
print(' '.join(res))
`;
  const held = 'flock:held range:held beyond:free ofd:held';
  const probe = (dir: string) =>
    execFileSync('python3', ['-c', TRY, dir], { encoding: 'utf8' }).trim();

  it('are held again after a restart, by the same program', () => {
    const dir = tmpDir('ckpt-locks-');
    const out = path.join(dir, 'out');
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', HOLD, dir]).trim());
    leftovers.push(pid);
    waitFor('counting', () => fs.existsSync(out) && numbers(out).length >= 3);
    expect(probe(dir)).toBe(held);
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the original gone', () => !isAlive(pid));
    expect(probe(dir)).toBe('flock:free range:free beyond:free ofd:free');
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    expect(probe(dir)).toBe(held);
    const at = numbers(out).length;
    waitFor('counting on', () => numbers(out).length >= at + 5);
  });

  it('a restart while another process holds one fails and leaves nothing', () => {
    const dir = tmpDir('ckpt-locks-');
    const out = path.join(dir, 'out');
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', HOLD, dir]).trim());
    leftovers.push(pid);
    waitFor('counting', () => fs.existsSync(out) && numbers(out).length >= 3);
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the original gone', () => !isAlive(pid));
    const other = spawn(
      'python3',
      [
        '-c',
        `import fcntl, time\nf = open('${dir}/a', 'r+')\nfcntl.flock(f, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)`,
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    leftovers.push(other.pid!);
    waitFor('the other process holding the lock', () => probe(dir).startsWith('flock:held'));
    const r = ckpt(['restart', img, '-d']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `pid ${pid} fd \\d+: cannot take its write flock lock .* on ${dir}/a again .*another process holds a conflicting lock`,
      ),
    );
    expect(isAlive(pid)).toBe(false);
  });
});

describe('deleted executable and library', () => {
  it('a program whose binary and a loaded library were replaced runs on', () => {
    const dir = tmpDir('ckpt-deleted-');
    const exe = path.join(dir, 'python3');
    const lib = path.join(dir, 'libz-copy.so');
    const out = path.join(dir, 'out');
    fs.copyFileSync('/usr/bin/python3.11', exe);
    fs.chmodSync(exe, 0o755);
    fs.copyFileSync('/lib/x86_64-linux-gnu/libz.so.1', lib);
    // Each line: a count and what the deleted library's code returns.
    const script = `
import ctypes, os, sys, time
z = ctypes.CDLL(sys.argv[1]); z.zlibVersion.restype = ctypes.c_char_p
i = 0
while True:
    i += 1
    with open(sys.argv[2], 'a') as f: f.write('%d %s\\n' % (i, z.zlibVersion().decode()))
    time.sleep(0.05)
`;
    const pid = Number(ckptOk(['run', '--', exe, '-c', script, lib, out]).trim());
    leftovers.push(pid);
    const lines = () =>
      fs.existsSync(out) ? fs.readFileSync(out, 'utf8').split('\n').filter(Boolean) : [];
    waitFor('counting', () => lines().length >= 3);
    fs.rmSync(exe);
    fs.rmSync(lib);
    const version = lines()[0]!.split(' ')[1];
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the original gone', () => !isAlive(pid));
    const at = lines().length;
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    waitFor('counting on', () => lines().length >= at + 5);
    const seen = lines().map((l) => l.split(' '));
    expect(seen.map(([n]) => Number(n))).toEqual(seen.map((_, i) => i + 1));
    for (const [, v] of seen) expect(v).toBe(version);
    expect(fs.readlinkSync(`/proc/${pid}/exe`)).toBe(`${exe} (deleted)`);
    expect(fs.readFileSync(`/proc/${pid}/maps`, 'utf8')).toContain(`${lib} (deleted)`);
  });
});

describe('a program run from a memfd', () => {
  /** fd 3's flags and offset, and what fd 3 and the exe link to. */
  function memfdState(pid: number): { exe: string; fd: string; flags: string; pos: string } {
    const info = fs.readFileSync(`/proc/${pid}/fdinfo/3`, 'utf8');
    return {
      exe: fs.readlinkSync(`/proc/${pid}/exe`),
      fd: fs.readlinkSync(`/proc/${pid}/fd/3`),
      flags: /^flags:\s*(\d+)/m.exec(info)![1]!,
      pos: /^pos:\s*(\d+)/m.exec(info)![1]!,
    };
  }

  it("exec'd with the memfd still open, it counts on with its exe and fd 3 the same memfd", () => {
    const out = path.join(tmpDir('ckpt-memfd-exe-'), 'out');
    // memfd_create without MFD_CLOEXEC: bash runs from it with fd 3 open.
    const script = `
import os, sys
fd = os.memfd_create('myprog', 0)
os.write(fd, open('/bin/bash', 'rb').read())
os.execv('/proc/self/fd/%d' % fd, ['myprog', '-c', 'i=0; while :; do i=$((i+1)); echo $i >> "$0"; sleep 0.05; done', sys.argv[1]])
`;
    let pid = 0;
    let before: ReturnType<typeof memfdState> | undefined;
    expectCountsOnAfterRestart(['python3', '-c', script, out], out, (p) => {
      pid = p;
      before = memfdState(p);
      expect(before).toMatchObject({
        exe: '/memfd:myprog (deleted)',
        fd: '/memfd:myprog (deleted)',
      });
    });
    expect(memfdState(pid)).toEqual(before);
    expect(fs.readFileSync(`/proc/${pid}/fd/3`).equals(fs.readFileSync('/bin/bash'))).toBe(true);
  });

  it("a memfd held open is exec'd after the restart", () => {
    const dir = tmpDir('ckpt-memfd-later-');
    const out = path.join(dir, 'out');
    const go = path.join(dir, 'go');
    // As runc does: the copy is made first, exec'd later.
    const script = `
import os, sys, time
fd = os.memfd_create('later', 0)
os.write(fd, open('/bin/sh', 'rb').read())
open(sys.argv[1], 'w').write('ready\\n')
while not os.path.exists(sys.argv[2]): time.sleep(0.02)
os.execv('/proc/self/fd/%d' % fd, ['later', '-c', 'echo ran >> "$0"', sys.argv[1]])
`;
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', script, out, go]).trim());
    leftovers.push(pid);
    waitFor('the memfd made', () => readOr(out) === 'ready\n');
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the original gone', () => !isAlive(pid));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    fs.writeFileSync(go, '');
    waitFor('the memfd run', () => readOr(out) === 'ready\nran\n');
  });
});

describe('pressure stall (PSI) files', () => {
  it('one open for writing (a trigger, as systemd-oomd sets) is refused, naming pid, fd and path, and the program runs on', () => {
    const out = path.join(tmpDir('ckpt-psi-trigger-'), 'out');
    const script = `
import os, select, sys
fd = os.open('/proc/pressure/cpu', os.O_RDWR | os.O_NONBLOCK)
os.write(fd, b'some 10000 2000000\\0')
open(sys.argv[1], 'w').write('armed\\n')
p = select.poll(); p.register(fd, select.POLLPRI)
while True: p.poll(1000)
`;
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', script, out]).trim());
    leftovers.push(pid);
    waitFor('the trigger set', () => readOr(out) === 'armed\n');
    const r = ckpt(['checkpoint', String(pid), '-o', tmpImage(), '--kill']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `pid ${pid} fd 3: /proc/pressure/cpu is a pressure (PSI) file open for writing, so it may hold a trigger; the kernel does not show a trigger, so it cannot be read back`,
    );
    // Left running although --kill was asked, its trigger still set.
    expect(isAlive(pid)).toBe(true);
    expect(['R', 'S']).toContain(statIds(pid).state);
    expect(fs.readlinkSync(`/proc/${pid}/fd/3`)).toBe('/proc/pressure/cpu');
  });

  it('one open read-only (the averages) is reopened and read on', () => {
    const out = path.join(tmpDir('ckpt-psi-read-'), 'out');
    // Each line: a count, once the file reads as PSI averages again
    // (anything else goes to the file instead, and breaks the count).
    const script = `
import os, sys, time
fd = os.open('/proc/pressure/memory', os.O_RDONLY)
i = 0
while True:
    line = os.pread(fd, 4096, 0).decode().split('\\n')[0]
    ok = line.startswith('some avg10=') and ' avg60=' in line
    if ok: i += 1
    with open(sys.argv[1], 'a') as f: f.write('%d\\n' % i if ok else 'read: %r\\n' % line)
    time.sleep(0.05)
`;
    expectCountsOnAfterRestart(['python3', '-c', script, out], out, (pid) =>
      expect(fs.readlinkSync(`/proc/${pid}/fd/3`)).toBe('/proc/pressure/memory'),
    );
  });
});

describe('a deleted working directory', () => {
  it('comes back as a deleted directory of the same path', () => {
    const dir = tmpDir('ckpt-cwd-');
    const work = path.join(dir, 'work');
    const out = path.join(dir, 'out');
    fs.mkdirSync(work);
    const pid = Number(
      ckptOk([
        'run',
        '--',
        'sh',
        '-c',
        `cd ${work} && exec sh -c 'while :; do echo x >> ${out}; sleep 0.05; done'`,
      ]).trim(),
    );
    leftovers.push(pid, -pid);
    waitFor('writing', () => fs.existsSync(out));
    waitFor('in its directory', () => fs.readlinkSync(`/proc/${pid}/cwd`) === work);
    fs.rmdirSync(work);
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the original gone', () => !isAlive(pid));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    expect(fs.readlinkSync(`/proc/${pid}/cwd`)).toBe(`${work} (deleted)`);
    expect(fs.existsSync(work)).toBe(false);
    const size = fs.statSync(out).size;
    waitFor('writing on', () => fs.statSync(out).size > size);
  });
});

describe('perl with SysV IPC in a container', () => {
  it('counts on from the value in its segment; its queue keeps its messages', () => {
    requireCommand('perl');
    const out = path.join(tmpDir('ckpt-perl-sysv-'), 'out');
    // Each round: the count in the segment + 1, one message queued, and
    // every third round one taken; the count goes to `out`.
    const script = [
      'use strict; use IPC::SysV qw(IPC_CREAT IPC_NOWAIT);',
      'my $shm = shmget(0x7001, 4096, IPC_CREAT | 0600) // die "shmget $!";',
      'my $q = msgget(0x7002, IPC_CREAT | 0600) // die "msgget $!";',
      'while (1) {',
      '  shmread($shm, my $v, 0, 16) or die "shmread $!";',
      '  $v = ($v =~ /^(\\d+)/) ? $1 + 1 : 1;',
      '  shmwrite($shm, sprintf("%-16d", $v), 0, 16) or die "shmwrite $!";',
      '  msgsnd($q, pack("l! a*", 1, "m$v"), IPC_NOWAIT) or die "msgsnd $!";',
      '  if ($v % 3 == 0) { msgrcv($q, my $buf, 100, 0, 0) or die "msgrcv $!"; }',
      `  open(my $f, ">>", ${JSON.stringify(out)}); print $f "$v\\n"; close $f;`,
      '  select(undef, undef, undef, 0.05);',
      '}',
    ].join('\n');
    const pid = Number(ckptOk(['run', '--container', '--', 'perl', '-e', script]).trim());
    leftovers.push(pid);
    waitFor('counting', () => fs.existsSync(out) && numbers(out).length >= 5, 20_000);
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill', '--container']);
    waitFor('the container gone', () => !isAlive(pid));
    const atKill = numbers(out).length;
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    waitFor('counting on', () => numbers(out).length >= atKill + 10, 20_000);
    process.kill(pid, 'SIGSTOP');
    try {
      const seen = numbers(out);
      expect(seen).toEqual(seen.map((_, i) => i + 1));
      // Stopped between the message and the line, or after both.
      const v = seen.length;
      const queued = (n: number) => n - Math.floor(n / 3);
      const msg = nsenter(pid, ['-i'], ['cat', '/proc/sysvipc/msg']).trim().split('\n')[1]!;
      const qnum = Number(msg.trim().split(/\s+/)[4]);
      expect([queued(v), queued(v + 1)]).toContain(qnum);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  });
});

/** A query through PostgreSQL's wire protocol (trust auth), printing the first DataRow's values. */
const PG_QUERY = `
import socket, struct, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)
params = b'user\\0ckptpg\\0database\\0postgres\\0\\0'
s.sendall(struct.pack('!ii', 8 + len(params), 196608) + params)
def messages():
    buf = b''
    while True:
        while len(buf) >= 5 and len(buf) >= 1 + struct.unpack('!i', buf[1:5])[0]:
            n = 1 + struct.unpack('!i', buf[1:5])[0]
            yield buf[0:1], buf[5:n]
            buf = buf[n:]
        chunk = s.recv(65536)
        if not chunk: return
        buf += chunk
m = messages()
for kind, body in m:
    if kind == b'Z': break
    if kind == b'E': sys.exit('error: ' + repr(body))
q = sys.argv[2].encode() + b'\\0'
s.sendall(b'Q' + struct.pack('!i', 4 + len(q)) + q)
for kind, body in m:
    if kind == b'D':
        n, at, out = struct.unpack('!h', body[:2])[0], 2, []
        for _ in range(n):
            l = struct.unpack('!i', body[at:at + 4])[0]
            out.append(body[at + 4:at + 4 + l].decode()); at += 4 + l
        print(' '.join(out))
    if kind == b'E': sys.exit('error: ' + repr(body))
    if kind == b'Z': break
`;

describe('PostgreSQL', () => {
  it('answers a query after checkpoint --kill and restart', () => {
    for (const cmd of ['initdb', 'postgres', 'useradd', 'userdel', 'su', 'ipcs', 'ipcrm'])
      requireCommand(cmd);
    const dir = tmpDir('ckpt-pg-');
    const port = String(55000 + (process.pid % 400));
    spawnSyncQuiet('userdel', ['ckptpg']);
    execFileSync('useradd', ['-M', '-s', '/bin/sh', 'ckptpg']);
    let main = 0;
    try {
      fs.chownSync(dir, Number(execFileSync('id', ['-u', 'ckptpg'], { encoding: 'utf8' })), 0);
      execFileSync('su', [
        'ckptpg',
        '-s',
        '/bin/sh',
        '-c',
        `initdb -D ${dir}/data > ${dir}/initdb.log 2>&1`,
      ]);
      const serve = `exec postgres -D ${dir}/data -k ${dir} -p ${port} -c listen_addresses=127.0.0.1 > ${dir}/log 2>&1`;
      const su = Number(ckptOk(['run', '--', 'su', 'ckptpg', '-s', '/bin/sh', '-c', serve]).trim());
      leftovers.push(su);
      const query = (sql: string) =>
        execFileSync('python3', ['-c', PG_QUERY, port, sql], {
          encoding: 'utf8',
          timeout: 30_000,
        }).trim();
      waitFor(
        'the server to accept connections',
        () => readOr(`${dir}/log`).includes('ready to accept connections'),
        30_000,
      );
      main = childrenOf(su)[0]!;
      leftovers.push(main);
      expect(query('select 40 + 2')).toBe('42');
      const img = tmpImage();
      ckptOk(['checkpoint', String(main), '-o', img, '--kill']);
      waitFor('the server gone', () => !isAlive(main), 10_000);
      expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(main);
      expect(query("select 40 + 2, current_setting('port')")).toBe(`42 ${port}`);
    } finally {
      if (main) {
        try {
          process.kill(main, 'SIGKILL');
        } catch {
          // gone
        }
        waitFor('the server gone', () => !isAlive(main), 10_000);
      }
      // Its interlock segment outlives it on the host.
      for (const line of execFileSync('ipcs', ['-m'], { encoding: 'utf8' }).split('\n')) {
        const f = line.trim().split(/\s+/);
        if (f[2] === 'ckptpg') spawnSyncQuiet('ipcrm', ['-m', f[1]!]);
      }
      spawnSyncQuiet('userdel', ['ckptpg']);
    }
  });
});

function spawnSyncQuiet(cmd: string, args: string[]): void {
  spawnSync(cmd, args, { stdio: 'ignore' });
}
