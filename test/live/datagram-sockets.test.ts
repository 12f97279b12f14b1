/**
 * Datagram sockets daemons hold (sweep 10: rsyslogd, chronyd and samba
 * were refused; syslog(3) users and squid's pinger too): a unix datagram
 * server socket a client once connected to (the kernel shows it
 * established, with no peer); a unix datagram socket connected to a named
 * socket outside the tree, as syslog(3) holds /dev/log, connected again by
 * name after restart (and left unconnected, with a warning, when nothing
 * listens there any more); a UDP socket connected to a peer outside. And a
 * listening TCP socket with a connection nobody accepted yet: a checkpoint
 * that kills the tree warns that its client gets a reset, and the listener
 * comes back. Each program counts what it sends or receives; after
 * `--kill` and restart the count goes on with nothing lost or repeated.
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ckpt, ckptOk } from '../support/ckpt.js';
import { isAlive, procState } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { childrenOf, waitFor, waitForPort } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

/** Receives datagrams on unix socket ARGV[1] and appends each to ARGV[2], one per line. */
const RECEIVER = `
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1])
out = open(sys.argv[2], 'a', buffering=1)
while True:
    out.write(s.recv(100).decode() + '\\n')
`;

/** Connects a datagram socket (unix path or UDP port ARGV[2]) and sends 1, 2, 3... every 50 ms; failures go to stdout. */
const SENDER = `
import socket, sys, time
if sys.argv[1] == 'unix':
    c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); c.connect(sys.argv[2])
else:
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.connect(('127.0.0.1', int(sys.argv[2])))
n = 0
while True:
    n += 1
    try:
        c.send(b'%d' % n)
    except OSError as e:
        print('send %d failed: %s' % (n, e.strerror), flush=True)
    time.sleep(0.05)
`;

/** Receives UDP datagrams on an ephemeral port, writing it to ARGV[1].port, each datagram to ARGV[1].log. */
const UDP_RECEIVER = `
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0))
out = open(sys.argv[1] + '.log', 'a', buffering=1)
open(sys.argv[1] + '.tmp', 'w').write(str(s.getsockname()[1])); os.rename(sys.argv[1] + '.tmp', sys.argv[1] + '.port')
while True:
    out.write(s.recv(100).decode() + '\\n')
`;

function numbers(file: string): number[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map(Number);
}

/** Wait for `file` to hold more than `count` numbers, then check it counts 1, 2, 3... */
function expectCountingPast(file: string, count: number): void {
  waitFor(`${file} to pass ${count} lines`, () => numbers(file).length > count + 5, 10_000);
  const n = numbers(file);
  expect(n).toEqual(n.map((_, i) => i + 1));
}

/** Start a python3 program with `ckpt run` (its own session), its stdout to `out` if given. */
function python(dir: string, name: string, program: string, args: string[], out?: string) {
  const file = path.join(dir, `${name}.py`);
  fs.writeFileSync(file, program);
  const stdout = out === undefined ? [] : ['--stdout', out];
  const pid = Number(ckptOk(['run', ...stdout, '--', 'python3', file, ...args]).trim());
  leftovers.push(pid);
  return pid;
}

/** checkpoint --kill, then restart -d; returns restart's stderr. */
function killAndRestart(pid: number): string {
  const img = tmpImage();
  const c = ckpt(['checkpoint', String(pid), '-o', img, '--kill']);
  expect(c.code, c.stderr).toBe(0);
  waitFor('the process to die', () => procState(pid) === undefined);
  const r = ckpt(['restart', img, '-d']);
  expect(r.code, r.stderr).toBe(0);
  expect(Number(r.stdout.trim())).toBe(pid);
  return r.stderr;
}

describe('datagram sockets', () => {
  it('a unix datagram server a client once connected to comes back bound, receiving', () => {
    const dir = tmpDir('ckpt-dgram-');
    const sock = path.join(dir, 'log.sock');
    const log = path.join(dir, 'received');
    const receiver = python(dir, 'receiver', RECEIVER, [sock, log]);
    waitFor('the socket', () => fs.existsSync(sock));
    // A client that connects, sends, and goes: the server shows established.
    const sender = python(dir, 'sender', SENDER, ['unix', sock]);
    waitFor('a few datagrams', () => fs.existsSync(log) && numbers(log).length > 3);
    process.kill(sender, 'SIGKILL');
    waitFor('the sender gone', () => !isAlive(sender));
    const before = numbers(log).length;
    killAndRestart(receiver);
    expect(numbers(log)).toHaveLength(before);
    // A new client's datagrams arrive after restart, numbered from 1 again.
    python(dir, 'sender2', SENDER, ['unix', sock]);
    waitFor('the new datagrams', () => numbers(log).length > before + 3);
    const after = numbers(log).slice(before);
    expect(after).toEqual(after.map((_, i) => i + 1));
  });

  it('a unix datagram socket connected to a named socket outside the tree (syslog-style) is connected again by name', () => {
    const dir = tmpDir('ckpt-dgram-');
    const sock = path.join(dir, 'log.sock');
    const log = path.join(dir, 'received');
    const daemon = python(dir, 'receiver', RECEIVER, [sock, log]);
    waitFor('the socket', () => fs.existsSync(sock));
    const out = path.join(dir, 'sender.out');
    const sender = python(dir, 'sender', SENDER, ['unix', sock], out);
    waitFor('a few datagrams', () => fs.existsSync(log) && numbers(log).length > 3);
    const before = numbers(log).length;
    const stderr = killAndRestart(sender);
    expect(stderr).not.toMatch(/warn/);
    expectCountingPast(log, before);
    expect(fs.readFileSync(out, 'utf8')).toBe('');

    // The daemon gone by the next restart: a warning, and sends fail.
    const img = tmpImage();
    ckptOk(['checkpoint', String(sender), '-o', img, '--kill']);
    waitFor('the process to die', () => procState(sender) === undefined);
    process.kill(daemon, 'SIGKILL');
    waitFor('the daemon gone', () => !isAlive(daemon));
    const r = ckpt(['restart', img, '-d']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      `recreating the socket connected to ${sock}: connecting it again failed (ECONNREFUSED`,
    );
    waitFor('a failed send', () => fs.readFileSync(out, 'utf8').includes('failed'));
    expect(fs.readFileSync(out, 'utf8')).toMatch(
      /^send \d+ failed: Transport endpoint is not connected$/m,
    );
  });

  it('a UDP socket connected to a peer outside the tree is connected to it again', () => {
    const dir = tmpDir('ckpt-dgram-');
    const base = path.join(dir, 'udp');
    python(dir, 'receiver', UDP_RECEIVER, [base]);
    waitFor('the port', () => fs.existsSync(`${base}.port`));
    const port = fs.readFileSync(`${base}.port`, 'utf8');
    const sender = python(dir, 'sender', SENDER, ['udp', port]);
    waitFor(
      'a few datagrams',
      () => fs.existsSync(`${base}.log`) && numbers(`${base}.log`).length > 3,
    );
    const before = numbers(`${base}.log`).length;
    killAndRestart(sender);
    expectCountingPast(`${base}.log`, before);
  });
});

describe('a listening TCP socket with a connection waiting to be accepted', () => {
  it('is saved with a warning when the tree is killed; the restored listener accepts new connections', async () => {
    const dir = tmpDir('ckpt-pending-');
    // Listens, and accepts only once DIR/go exists.
    const program = `
import os, socket, sys, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()
open(sys.argv[1] + '/port.tmp', 'w').write(str(s.getsockname()[1])); os.rename(sys.argv[1] + '/port.tmp', sys.argv[1] + '/port')
while not os.path.exists(sys.argv[1] + '/go'): time.sleep(0.05)
while True:
    c, _ = s.accept(); c.sendall(b'hello\\n'); c.close()
`;
    const pid = python(dir, 'server', program, [dir]);
    const port = waitForPort(dir, 'the port');
    const waiting = net.connect(port, '127.0.0.1');
    waiting.on('error', () => {});
    await new Promise((ok) => waiting.once('connect', ok));
    const img = tmpImage();
    const c = ckpt(['checkpoint', String(pid), '-o', img, '--kill']);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stderr).toMatch(
      new RegExp(
        `pid ${pid} fd \\d+: TCP socket listening on 127\\.0\\.0\\.1:${port} has 1 connection\\(s\\) waiting to be accepted, which cannot be saved: their clients get a reset`,
      ),
    );
    waiting.destroy();
    waitFor('the process to die', () => procState(pid) === undefined);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    fs.writeFileSync(path.join(dir, 'go'), '');
    const answer = await new Promise<string>((ok, fail) => {
      const sock = net.connect(port, '127.0.0.1');
      let got = '';
      sock.on('data', (d) => {
        got += d;
      });
      sock.on('end', () => ok(got));
      sock.on('error', fail);
    });
    expect(answer).toBe('hello\n');
  });
});

describe('sweep 11', () => {
  it('a datagram socket connected to a bound socket of the tree is connected to it again, not made a pair (smbd)', () => {
    const dir = tmpDir('ckpt-dgram-tree-');
    const sock = path.join(dir, 'a.sock');
    const log = path.join(dir, 'received');
    // The parent binds and receives; its child connects by name and sends.
    const program = `
import os, socket, sys, time
a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); a.bind(sys.argv[1])
if os.fork() == 0:
    b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); b.connect(sys.argv[1])
    n = 0
    while True:
        n += 1; b.send(b'%d' % n); time.sleep(0.05)
out = open(sys.argv[2], 'a', buffering=1)
while True:
    out.write(a.recv(100).decode() + '\\n')
`;
    const pid = python(dir, 'pair', program, [sock, log]);
    waitFor('a few datagrams', () => fs.existsSync(log) && numbers(log).length > 3);
    const [child] = childrenOf(pid);
    leftovers.push(child!);
    const fdsBefore = fs.readdirSync(`/proc/${child}/fd`).length;
    const before = numbers(log).length;
    killAndRestart(pid);
    expectCountingPast(log, before);
    expect(fs.readdirSync(`/proc/${child}/fd`)).toHaveLength(fdsBefore);
  });

  it('SO_PASSCRED of a unix, a netlink socket and a socketpair end is kept (avahi-daemon), with a pair end send buffer', () => {
    const dir = tmpDir('ckpt-passcred-');
    // The pair end with SO_PASSCRED gets each message with the sender's
    // credentials (SCM_CREDENTIALS, type 2): "cred" when it did.
    const program = `
import os, socket, sys, time
u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); u.bind(sys.argv[1] + '/u.sock')
u.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
n = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0); n.bind((0, 0))
n.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
b.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 50000)
while True:
    a.send(b'x')
    _, anc, _, _ = b.recvmsg(10, 1024)
    v = '%d %d %d %s %d' % (u.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED), n.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED),
        b.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED), 'cred' if [c for c in anc if c[1] == 2] else 'none',
        a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF))
    open(sys.argv[1] + '/v.tmp', 'w').write(v); os.rename(sys.argv[1] + '/v.tmp', sys.argv[1] + '/v')
    time.sleep(0.05)
`;
    const pid = python(dir, 'passcred', program, [dir]);
    const value = () => fs.readFileSync(path.join(dir, 'v'), 'utf8');
    waitFor('the values', () => fs.existsSync(path.join(dir, 'v')));
    expect(value()).toBe('1 1 1 cred 100000');
    killAndRestart(pid);
    fs.rmSync(path.join(dir, 'v'));
    waitFor('the values after restart', () => fs.existsSync(path.join(dir, 'v')));
    expect(value()).toBe('1 1 1 cred 100000');
  });

  it('a listening unix socket bound before chroot() keeps its file (openntpd)', async () => {
    const dir = tmpDir('ckpt-chroot-');
    fs.mkdirSync(path.join(dir, 'x'));
    fs.mkdirSync(path.join(dir, 'jail'));
    const sock = path.join(dir, 'x', 'ctl.sock');
    const program = `
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(sys.argv[1]); s.listen(5)
os.chroot(sys.argv[2]); os.chdir('/')
while True:
    c, _ = s.accept(); c.sendall(b'pong'); c.close()
`;
    const pid = python(dir, 'chrooted', program, [sock, path.join(dir, 'jail')]);
    const ask = () =>
      new Promise<string>((ok, fail) => {
        const c = net.connect(sock);
        let got = '';
        c.on('data', (d) => {
          got += d;
        });
        c.on('end', () => ok(got));
        c.on('error', fail);
      });
    waitFor('the chroot', () => fs.readlinkSync(`/proc/${pid}/root`) === path.join(dir, 'jail'));
    expect(await ask()).toBe('pong');
    killAndRestart(pid);
    expect(fs.existsSync(sock)).toBe(true);
    expect(await ask()).toBe('pong');
  });

  it('a UDP socket with datagrams waiting is saved with a warning that they are lost (busy UDP servers)', async () => {
    const dir = tmpDir('ckpt-udp-waiting-');
    // Binds, then reads nothing until DIR/go; then logs what arrives.
    const program = `
import os, socket, sys, time
d = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', 0))
open(d + '/port.tmp', 'w').write(str(s.getsockname()[1])); os.rename(d + '/port.tmp', d + '/port')
while not os.path.exists(d + '/go'): time.sleep(0.05)
out = open(d + '/log', 'a', buffering=1)
while True:
    out.write(s.recv(100).decode() + '\\n')
`;
    const pid = python(dir, 'udp', program, [dir]);
    const port = waitForPort(dir, 'the port');
    const send = (text: string) =>
      new Promise<void>((ok) => {
        const c = dgram.createSocket('udp4');
        c.send(text, port, '127.0.0.1', () => {
          c.close();
          ok();
        });
      });
    await send('before');
    const img = tmpImage();
    const c = ckpt(['checkpoint', String(pid), '-o', img, '--kill']);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stderr).toMatch(
      new RegExp(
        `UDP socket on 127\\.0\\.0\\.1:${port} has \\d+ bytes of datagrams waiting, which cannot be saved: they are lost`,
      ),
    );
    waitFor('the process to die', () => procState(pid) === undefined);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    fs.writeFileSync(path.join(dir, 'go'), '');
    await send('after');
    waitFor(
      'the datagram after restart',
      () =>
        fs.existsSync(path.join(dir, 'log')) &&
        fs.readFileSync(path.join(dir, 'log'), 'utf8') === 'after\n',
    );
  });
});
