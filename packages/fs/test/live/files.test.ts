/**
 * The fd table, files, devices, external fds and cwd/root/umask, through
 * the real CLI: checkpoint --kill, then restart.
 */
import { type ChildProcess, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type FixtureHandle, isAlive, startFixture } from '../../../../test/support/fixtures.js';
import { requireRoot } from '../../../../test/support/prereq.js';
import { CLI, ckpt, ckptAsync, fdprog, type Launched, launch } from './support.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function started<T extends { dispose(): void }>(x: T): T {
  cleanups.push(() => x.dispose());
  return x;
}

/** Kill a `ckpt restart` still waiting for its process. */
function reaped(child: ChildProcess): ChildProcess {
  cleanups.push(() => child.exitCode === null && child.kill('SIGKILL'));
  return child;
}

function checkpointKill(pid: number, img: string): void {
  const r = ckpt('checkpoint', String(pid), '-o', img, '--kill');
  expect(r.status, r.stderr).toBe(0);
}

beforeAll(() => {
  requireRoot();
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run 'pnpm run build' first`);
  fdprog();
});

/**
 * Start fixture `name`, checkpoint it with --kill and restart it detached
 * (`check` looks at the image first), then let it verify itself.
 */
function roundTrip(name: string, check?: (img: string) => void): void {
  const f: FixtureHandle = started(startFixture(name));
  const img = path.join(f.dir, 'img');
  checkpointKill(f.pid, img);
  check?.(img);
  const r = ckpt('restart', img, '-d');
  expect(r.status, r.stderr).toBe(0);
  expect(r.stdout.trim()).toBe(String(f.pid));
  f.go();
  expect(f.waitResult()).toBe('PASS');
}

describe('files fixture', () => {
  it('restores offsets, flags, cloexec, the shared fd 77, devices, cwd and umask', () => {
    roundTrip('files');
  });
});

describe('deleted files', () => {
  it('open and mapped, sparse, O_TMPFILE, /dev/shm, memfd: one file each again, data, offsets, flags and seals kept', () => {
    // The sparse file's hole is not saved: the image holds its data only.
    roundTrip('ghost', (img) => expect(fs.statSync(img).size).toBeLessThan(6 << 20));
  });
});

describe('sockets that wait', () => {
  it('listening TCP (IPv4, IPv6) and unix sockets, a bound UDP socket: same addresses, options, file mode', () => {
    roundTrip('sockets');
  });

  it('a listening TCP socket with a connection waiting to be accepted is saved, warning that its client gets a reset', () => {
    const p = started(launch('listen'));
    const r = ckpt('checkpoint', String(p.pid), '-o', path.join(p.dir, 'img'), '--kill');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      new RegExp(
        `pid ${p.pid} fd 5: TCP socket listening on 127\\.0\\.0\\.1:\\d+ has 1 connection\\(s\\) waiting to be accepted, which cannot be saved: their clients get a reset`,
      ),
    );
    // Restarted, so that the network lock of its own connection (fd 6) is let go.
    const back = ckpt('restart', path.join(p.dir, 'img'), '-d');
    expect(back.status, back.stderr).toBe(0);
  });
});

describe('connected unix sockets', () => {
  it('socketpairs between a parent and its child and within one process: bytes in flight, flags', () => {
    roundTrip('unixpair');
  });

  it('left running, their queued bytes are still there (peeked, not read)', () => {
    const f: FixtureHandle = started(startFixture('unixpair'));
    const r = ckpt('checkpoint', String(f.pid), '-o', path.join(f.dir, 'img'));
    expect(r.status, r.stderr).toBe(0);
    f.go();
    expect(f.waitResult()).toBe('PASS');
  });
});

describe('event files', () => {
  it('eventfd, signalfd, timerfd, epoll and inotify: counters, modes, masks, targets with their data, watches with their descriptors', () => {
    roundTrip('evfds');
  });
});

describe('unsupported files fail the checkpoint', () => {
  function expectRefused(p: Launched, message: RegExp): void {
    const r = ckpt('checkpoint', String(p.pid), '-o', path.join(p.dir, 'img'), '--kill');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(message);
    // Left running although --kill was asked.
    expect(isAlive(p.pid)).toBe(true);
  }

  it('a deleted directory, naming pid, fd and path', () => {
    const p = started(launch('deleted'));
    expectRefused(
      p,
      new RegExp(
        `pid ${p.pid} fd 5: ${p.dir}/gone\\.d was deleted while open; only deleted regular files are supported, not a deleted directory`,
      ),
    );
  });

  it('a userfaultfd', () => {
    const p = started(launch('userfaultfd'));
    expectRefused(
      p,
      new RegExp(
        `pid ${p.pid} fd 5: anon_inode:\\[userfaultfd\\] \\(userfaultfd\\) is not supported yet`,
      ),
    );
  });

  it('a file whose directory a mount now covers (its path leads to another file)', () => {
    const p = started(launch('covered'));
    const over = path.join(p.dir, 'h');
    execFileSync('mount', ['-t', 'tmpfs', 'ckpt-test', over]);
    cleanups.push(() => execFileSync('umount', [over]));
    fs.writeFileSync(path.join(over, 'f'), 'another file\n');
    expectRefused(
      p,
      new RegExp(`pid ${p.pid} fd 5: ${over}/f now leads to another file \\(a mount covers it`),
    );
  });

  it('a working directory a mount now covers', () => {
    const p = started(launch('covered'));
    const over = path.join(p.dir, 'c');
    execFileSync('mount', ['-t', 'tmpfs', 'ckpt-test', over]);
    cleanups.push(() => execFileSync('umount', [over]));
    expectRefused(
      p,
      new RegExp(`pid ${p.pid}: its working directory ${over} now leads to another directory`),
    );
  });

  it('a unix socket connected to a process outside the tree', () => {
    const p = started(launch('socketpair'));
    expectRefused(
      p,
      new RegExp(
        `pid ${p.pid} fd 5: unix socket \\d+ is connected to socket \\d+, which no process of the checkpointed tree holds \\(pid \\d+ \\(fdprog-\\w+\\) fd \\d+ does\\); it cannot be restored`,
      ),
    );
  });
});

describe('external fds', () => {
  /** fdprog stdio, its fd 1 and 7 on a FIFO whose read end we hold; checkpointed with --kill. */
  function stdioImage(): { p: Launched; img: string } {
    let reader = -1;
    const p = started(
      launch('stdio', (dir) => {
        const fifo = path.join(dir, 'fifo');
        execFileSync('mkfifo', [fifo]);
        reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
      }),
    );
    cleanups.push(() => fs.closeSync(reader));
    const img = path.join(p.dir, 'img');
    checkpointKill(p.pid, img);
    const buf = Buffer.alloc(64);
    expect(buf.toString('utf8', 0, fs.readSync(reader, buf))).toBe('before\n');
    return { p, img };
  }

  it('stdio is reconnected to ckpt restart’s; other fds to /dev/null', async () => {
    const { p, img } = stdioImage();
    const run = ckptAsync('restart', img);
    reaped(run.child);
    p.go();
    const r = await run.done;
    expect({ status: r.status, stdout: r.stdout }).toEqual({
      status: 0,
      stdout: `after ${p.pid}\n`,
    });
    // Only the fd that is not stdio is worth a warning.
    expect(r.stderr).toMatch(
      new RegExp(
        `^ckpt: warn: pid ${p.pid} fd 7 \\(.*\\) led outside the tree: it is connected to /dev/null \\(--inherit-fd 7:FD gives it one of restart's\\)\n$`,
      ),
    );
  });

  it('--inherit-fd connects saved fds to the given fds', async () => {
    const { p, img } = stdioImage();
    const run = ckptAsync('restart', img, '--inherit-fd', '1:2', '--inherit-fd', '7:1');
    reaped(run.child);
    p.go();
    const r = await run.done;
    expect(r).toEqual({ status: 0, stdout: `fd7 ${p.pid}\n`, stderr: `after ${p.pid}\n` });
  });
});

describe('files reopened by path', () => {
  it('a directory fd refuses to restart once the path is a regular file, and restarts when it is back', async () => {
    const p = started(launch('dir', (dir) => fs.mkdirSync(path.join(dir, 'd'))));
    const img = path.join(p.dir, 'img');
    checkpointKill(p.pid, img);
    const d = path.join(p.dir, 'd');
    fs.rmdirSync(d);
    fs.writeFileSync(d, 'not a directory');
    const refused = ckpt('restart', img, '-d');
    expect(refused.status).not.toBe(0);
    expect(refused.stderr).toContain(
      `pid ${p.pid}: ${d} was a directory at checkpoint and is now a regular`,
    );
    expect(isAlive(p.pid)).toBe(false);

    fs.rmSync(d);
    fs.mkdirSync(d);
    const run = ckptAsync('restart', img);
    reaped(run.child);
    p.go();
    expect(await run.done).toEqual({ status: 0, stdout: '', stderr: '' });
  });
});

describe('fs phase', () => {
  it('restores a chroot and the cwd inside it', async () => {
    const p = started(
      launch('chroot', (dir) => {
        fs.mkdirSync(path.join(dir, 'sub'));
        fs.writeFileSync(path.join(dir, 'marker'), '');
      }),
    );
    const img = path.join(p.dir, 'img');
    checkpointKill(p.pid, img);
    const run = ckptAsync('restart', img);
    reaped(run.child);
    p.go();
    expect(await run.done).toEqual({ status: 0, stdout: '', stderr: '' });
  });
});
