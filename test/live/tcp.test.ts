/**
 * Established TCP connections (TCP repair mode): a python3 server in the
 * tree talks to a client outside it over 127.0.0.1. At the checkpoint the
 * server is blocked sending 4 MiB the client does not read yet (its send
 * queue holds data) and a line the client sent waits unread in its
 * receive queue. After `--kill` and restart the client, which kept its
 * end open all along, reads the whole 4 MiB intact and the server's
 * numbered answers go on from where they were: the same connection, with
 * nothing lost or repeated. With `--leave-running` the connection goes on
 * untouched, and a `--no-pids` copy restarted beside the original is
 * refused (two sockets cannot have one address pair). A connection being
 * closed is refused naming its state.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { socketOption, withFdCopy } from '@ckpt/core';
import { describe, expect, it } from 'vitest';
import { CKPT_BIN, ckpt, ckptOk } from '../support/ckpt.js';
import { isAlive, python, sleepSync } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireCommand } from '../support/prereq.js';
import { waitFor, waitForPort } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

/** Answers each line with "<n> <line>"; on "blob" sends 4 MiB first. */
const SERVER = `
import os, socket, sys
d = sys.argv[1]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('127.0.0.1', 0))
srv.listen(1)
open(d + '/port.tmp', 'w').write(str(srv.getsockname()[1]))
os.rename(d + '/port.tmp', d + '/port')
conn, _ = srv.accept()
conn.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
conn.setsockopt(socket.IPPROTO_TCP, 18, 12345)  # TCP_USER_TIMEOUT
if sys.argv[2:] == ['close']:
    srv.close()
f = conn.makefile('rb')
count = 0
for line in f:
    count += 1
    word = line.decode().strip()
    if word == 'blob':
        conn.sendall(bytes(range(256)) * 16384)
    conn.sendall(f'{count} {word}\\n'.encode())
`;

/**
 * Sends "a", then "blob" and "b" without reading (a small receive buffer
 * fills), says "ready", waits for "go", then reads everything and sends
 * "c"; writes what it got to DIR/result.
 */
const CLIENT = `
import json, os, socket, sys, time
d = sys.argv[1]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
s.settimeout(60)
s.connect(('127.0.0.1', int(open(d + '/port').read())))
f = s.makefile('rb')
line = lambda: f.readline().decode().strip()
out = {}
s.sendall(b'a\\n'); out['a'] = line()
s.sendall(b'blob\\n'); time.sleep(1)
s.sendall(b'b\\n'); time.sleep(0.5)
open(d + '/ready', 'w').close()
while not os.path.exists(d + '/go'): time.sleep(0.05)
out['blob'] = f.read(4 << 20) == bytes(range(256)) * 16384
out['afterBlob'] = line()
out['b'] = line()
s.sendall(b'c\\n'); out['c'] = line()
json.dump(out, open(d + '/result.tmp', 'w'))
os.rename(d + '/result.tmp', d + '/result')
`;

/**
 * Sends "a" and reads the answer, says "ready"; once told the server is
 * "gone", sends "x" (says "sent") and reads the answer, then "y"; writes
 * what it got, or the error that ended the connection, to DIR/result.
 */
const CHATTY_CLIENT = `
import json, os, socket, sys, time
d = sys.argv[1]
s = socket.socket()
s.settimeout(60)
s.connect(('127.0.0.1', int(open(d + '/port').read())))
f = s.makefile('rb')
line = lambda: f.readline().decode().strip()
out = {}
try:
    s.sendall(b'a\\n'); out['a'] = line()
    open(d + '/ready', 'w').close()
    while not os.path.exists(d + '/gone'): time.sleep(0.05)
    s.sendall(b'x\\n')
    open(d + '/sent', 'w').close()
    out['x'] = line()
    s.sendall(b'y\\n'); out['y'] = line()
except Exception as e:
    out['error'] = type(e).__name__
json.dump(out, open(d + '/result.tmp', 'w'))
os.rename(d + '/result.tmp', d + '/result')
`;

/** An asyncio echo server ("echo " + each line) with room for thousands of fds. */
const ECHO_SERVER = `
import asyncio, os, resource, sys
d = sys.argv[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
async def echo(r, w):
    while line := await r.readline():
        w.write(b'echo ' + line)
        await w.drain()
async def main():
    srv = await asyncio.start_server(echo, '127.0.0.1', 0, backlog=1024)
    open(d + '/port.tmp', 'w').write(str(srv.sockets[0].getsockname()[1]))
    os.rename(d + '/port.tmp', d + '/port')
    await srv.serve_forever()
asyncio.run(main())
`;

/**
 * Opens N connections to the echo server, sends a line on each and reads
 * its echo, says "ready", waits for "go" and does it again; writes the
 * connections that failed each round (index and what came back) to
 * DIR/result.
 */
const MANY_CLIENT = `
import json, os, resource, socket, sys, time
d, n = sys.argv[1], int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
port = int(open(d + '/port').read())
conns = []
for i in range(n):
    s = socket.create_connection(('127.0.0.1', port))
    s.settimeout(60)
    conns.append((s, s.makefile('rb')))
def exchange(word):
    for i, (s, f) in enumerate(conns):
        s.sendall(b'%s %d\\n' % (word, i))
    bad = []
    for i, (s, f) in enumerate(conns):
        try:
            got = f.readline()
            if got != b'echo %s %d\\n' % (word, i):
                bad.append([i, got.decode()])
        except Exception as e:
            bad.append([i, type(e).__name__])
    return bad
out = {'before': exchange(b'one')}
open(d + '/ready', 'w').close()
while not os.path.exists(d + '/go'): time.sleep(0.05)
out['after'] = exchange(b'two')
json.dump(out, open(d + '/result.tmp', 'w'))
os.rename(d + '/result.tmp', d + '/result')
`;

/** The elements of the network lock's set of IPv4 connections ('' if there is no lock). */
function lockedIpv4(): string {
  const r = spawnSync('nft', ['list', 'set', 'inet', 'ckpt', 'tcp4'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout : '';
}

/** Bytes queued and never sent on the established connection on local `port` (ss's notsent). */
function notSent(port: number): number {
  const ss = spawnSync('ss', ['-tinH', 'state', 'established', `sport = :${port}`], {
    encoding: 'utf8',
  });
  return Number(/notsent:(\d+)/.exec(ss.stdout)?.[1] ?? 0);
}

/** tx and rx queue bytes of the established connection on local `port`, from /proc/net/tcp. */
function queues(port: number): { tx: number; rx: number } | undefined {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const l of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = l.trim().split(/\s+/);
    if (f[1]?.endsWith(`:${hexPort}`) && f[3] === '01') {
      const [tx, rx] = (f[4] ?? '0:0').split(':').map((h) => Number.parseInt(h, 16));
      return { tx: tx!, rx: rx! };
    }
  }
  return undefined;
}

/** `closeListener`: the server keeps only the connection (else its listening socket too, on the same port). */
/** SO_REUSEADDR of socket fd `fd` of `pid`, through a copy of it. */
function reuseAddr(pid: number, fd: number): number {
  return withFdCopy(pid, fd, (copy) => socketOption(copy, 1, 2));
}

function startPair(closeListener = false, clientScript = CLIENT) {
  const dir = tmpDir('ckpt-tcp-');
  fs.writeFileSync(path.join(dir, 'server.py'), SERVER);
  fs.writeFileSync(path.join(dir, 'client.py'), clientScript);
  const args = [path.join(dir, 'server.py'), dir, ...(closeListener ? ['close'] : [])];
  const server = Number(ckptOk(['run', '--', 'python3', ...args]).trim());
  leftovers.push(server);
  waitFor('the server to listen', () => fs.existsSync(path.join(dir, 'port')), 10_000);
  const client = spawn('python3', [path.join(dir, 'client.py'), dir], {
    stdio: 'ignore',
    detached: true,
  });
  leftovers.push(client.pid!);
  waitFor('the client to be ready', () => fs.existsSync(path.join(dir, 'ready')), 20_000);
  const port = Number(fs.readFileSync(path.join(dir, 'port'), 'utf8'));
  return { dir, server, port };
}

function result(dir: string) {
  const file = path.join(dir, 'result');
  fs.writeFileSync(path.join(dir, 'go'), '');
  waitFor('the client to finish', () => fs.existsSync(file), 60_000);
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

const EXPECTED = { a: '1 a', blob: true, afterBlob: '2 blob', b: '3 b', c: '4 c' };

describe('an established TCP connection', () => {
  it('goes on after --kill and restart: queued data both ways, no byte lost or repeated', () => {
    requireCommand('ss');
    const { dir, server, port } = startPair();
    // What is in flight: the server's unsent part of the 4 MiB, and "b".
    const q = queues(port);
    expect(q?.tx).toBeGreaterThan(0);
    expect(q?.rx).toBe(2);
    const img = tmpImage();
    ckptOk(['checkpoint', String(server), '-o', img, '--kill']);
    waitFor('the server gone', () => !isAlive(server));
    // The connection survived the server's death on the client's side.
    expect(queues(port)).toBeUndefined();
    const restored = Number(ckptOk(['restart', img, '-d']).trim());
    expect(restored).toBe(server);
    // What it had not sent yet (most of the 4 MiB: the client reads
    // nothing yet) is still unsent, not counted as sent and waiting for a
    // retransmission timeout.
    expect(notSent(port)).toBeGreaterThan(3 << 20);
    // The connection keeps SO_REUSEADDR, which it had from its listener:
    // else its port stays taken for a minute after it closes.
    expect(reuseAddr(server, 4)).toBe(1);
    // Options the program set on the connection: IP_TOS, TCP_USER_TIMEOUT.
    expect(
      withFdCopy(server, 4, (fd) => [socketOption(fd, 0, 1), socketOption(fd, 6, 18)]),
    ).toEqual([0x10, 12345]);
    expect(result(dir)).toEqual(EXPECTED);
  });

  it('gets what the peer sent while the process was gone: its packets are dropped meanwhile, not reset', () => {
    requireCommand('nft');
    const { dir, server, port } = startPair(false, CHATTY_CLIENT);
    const img = tmpImage();
    ckptOk(['checkpoint', String(server), '-o', img, '--kill']);
    waitFor('the server gone', () => !isAlive(server));
    expect(lockedIpv4()).toMatch(
      new RegExp(`127\\.0\\.0\\.1 \\. \\d+ \\. 127\\.0\\.0\\.1 \\. ${port}\\b`),
    );
    // The client sends while nothing holds the connection here: without the
    // lock the kernel answers with a reset and the client's read fails.
    fs.writeFileSync(path.join(dir, 'gone'), '');
    waitFor('the client to send', () => fs.existsSync(path.join(dir, 'sent')), 10_000);
    sleepSync(500);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(server);
    // Retransmitted after the restart, "x" reaches the server.
    waitFor('the client to finish', () => fs.existsSync(path.join(dir, 'result')), 60_000);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'result'), 'utf8'))).toEqual({
      a: '1 a',
      x: '2 x',
      y: '3 y',
    });
    // The lock is gone with the last connection it held.
    expect(spawnSync('nft', ['list', 'table', 'inet', 'ckpt']).status).not.toBe(0);
  });

  it('loses nothing a peer sends while the tree is being saved (sweep 12: data acknowledged then lost, the connection stuck)', () => {
    requireCommand('nft');
    const dir = tmpDir('ckpt-tcp-');
    // A server whose 100 MiB make its checkpoint take a while, and a
    // client that sends a numbered line every 10 ms throughout.
    fs.writeFileSync(
      path.join(dir, 'server.py'),
      `
import os, socket, sys
d = sys.argv[1]
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()
open(d + '/port.tmp', 'w').write(str(s.getsockname()[1])); os.rename(d + '/port.tmp', d + '/port')
c, _ = s.accept(); f = c.makefile('rb')
big = bytearray(100 << 20)
for i in range(0, len(big), 4096): big[i] = 1
log = open(d + '/log', 'a', buffering=1)
expect = 0
for line in f:
    n = int(line)
    log.write(('%d\\n' % n) if n == expect else ('GAP %d %d\\n' % (expect, n)))
    expect = n + 1
`,
    );
    fs.writeFileSync(
      path.join(dir, 'client.py'),
      `
import socket, sys, time
c = socket.create_connection(('127.0.0.1', int(open(sys.argv[1] + '/port').read())))
i = 0
while True:
    c.sendall(b'%d\\n' % i); i += 1; time.sleep(0.01)
`,
    );
    const server = Number(
      ckptOk(['run', '--', 'python3', path.join(dir, 'server.py'), dir]).trim(),
    );
    leftovers.push(server);
    waitFor('the server to listen', () => fs.existsSync(path.join(dir, 'port')), 10_000);
    const client = spawn('python3', [path.join(dir, 'client.py'), dir], {
      stdio: 'ignore',
      detached: true,
    });
    leftovers.push(client.pid!);
    const lines = () =>
      fs
        .readFileSync(path.join(dir, 'log'), 'utf8')
        .split('\n')
        .filter((l) => l);
    waitFor(
      'lines to arrive',
      () => fs.existsSync(path.join(dir, 'log')) && lines().length > 50,
      20_000,
    );
    const img = tmpImage();
    ckptOk(['checkpoint', String(server), '-o', img, '--kill']);
    waitFor('the server gone', () => !isAlive(server));
    sleepSync(500);
    const before = lines().length;
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(server);
    waitFor('lines to arrive after the restart', () => lines().length > before + 100, 20_000);
    // Read once: the server goes on writing.
    const got = lines();
    expect(got.filter((l) => l.startsWith('GAP'))).toEqual([]);
    expect(got.map(Number)).toEqual(got.map((_, i) => i));
  });

  it('without nft: the checkpoint says the peer is not held back, and the connection still comes back', () => {
    const { dir, server } = startPair();
    const img = tmpImage();
    // A PATH without /usr/sbin and /sbin, where nft lives.
    const r = ckpt(['checkpoint', String(server), '-o', img, '--kill'], {
      env: { ...process.env, PATH: '/usr/bin:/bin' },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      'TCP connection(s) not held back while the process is gone (nft not found (install the nftables package))',
    );
    expect(lockedIpv4()).toBe('');
    waitFor('the server gone', () => !isAlive(server));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(server);
    expect(result(dir)).toEqual(EXPECTED);
  });

  it("on the stdio of a child (inetd style) comes back as the connection, not as restart's stdio", () => {
    const dir = tmpDir('ckpt-tcp-inetd-');
    // Accepts one connection and runs cat on it in a child, as inetd does.
    const script = [
      'import os, socket, sys, time',
      `d = ${JSON.stringify(dir)}`,
      's = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)',
      'open(d + "/port.tmp", "w").write(str(s.getsockname()[1])); os.rename(d + "/port.tmp", d + "/port")',
      'c, _ = s.accept()',
      'if os.fork() == 0:',
      '    os.dup2(c.fileno(), 0); os.dup2(c.fileno(), 1); os.execvp("cat", ["cat"])',
      'c.close()',
      'time.sleep(1000)',
    ].join('\n');
    const server = Number(ckptOk(['run', '--', 'python3', '-c', script]).trim());
    leftovers.push(server);
    const port = waitForPort(dir);
    // The client outside the tree: "one" before, "two" after the restart.
    const client = [
      'import os, socket, time',
      `d = ${JSON.stringify(dir)}`,
      `s = socket.create_connection(("127.0.0.1", ${port})); s.settimeout(30)`,
      'f = s.makefile("rb")',
      's.sendall(b"one\\n"); got = [f.readline().decode().strip()]',
      'open(d + "/ready", "w").close()',
      'while not os.path.exists(d + "/go"): time.sleep(0.05)',
      's.sendall(b"two\\n"); got.append(f.readline().decode().strip())',
      'open(d + "/result.tmp", "w").write(" ".join(got)); os.rename(d + "/result.tmp", d + "/result")',
    ].join('\n');
    const c = spawn('python3', ['-c', client], { stdio: 'ignore', detached: true });
    leftovers.push(c.pid!);
    waitFor('the client to be ready', () => fs.existsSync(path.join(dir, 'ready')), 10_000);
    const img = tmpImage();
    const done = JSON.parse(ckptOk(['checkpoint', String(server), '-o', img, '--kill', '--json']));
    expect(done.pids).toHaveLength(2);
    waitFor('the tree gone', () => done.pids.every((p: number) => !isAlive(p)));
    ckptOk(['restart', img, '-d']);
    fs.writeFileSync(path.join(dir, 'go'), '');
    waitFor('the client to finish', () => fs.existsSync(path.join(dir, 'result')), 30_000);
    expect(fs.readFileSync(path.join(dir, 'result'), 'utf8')).toBe('one two');
  });

  it('is left untouched by --leave-running; a copy beside the original is refused', () => {
    const { dir, server } = startPair(true);
    const img = tmpImage();
    expect(reuseAddr(server, 4)).toBe(1); // from its listener
    ckptOk(['checkpoint', String(server), '-o', img, '--leave-running']);
    expect(isAlive(server)).toBe(true);
    // Leaving repair mode clears it: ckpt sets it again.
    expect(reuseAddr(server, 4)).toBe(1);
    // Its connection would have the original's addresses.
    const copy = ckpt(['restart', img, '--no-pids', '-d']);
    expect(copy.code).not.toBe(0);
    expect(copy.stderr).toMatch(
      /-> 127\.0\.0\.1:\d+: that connection is still open here \(established/,
    );
    expect(result(dir)).toEqual(EXPECTED);
  });

  it('closed by its peer (close-wait) comes back with its unread bytes, then the end of file', () => {
    const dir = tmpDir('ckpt-tcp-closewait-');
    // A server whose client sends a line and closes before the server reads.
    const script = [
      'import os, socket, sys, time',
      `d = ${JSON.stringify(dir)}`,
      'srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)',
      'open(d + "/port.tmp", "w").write(str(srv.getsockname()[1])); os.rename(d + "/port.tmp", d + "/port")',
      'a, _ = srv.accept()',
      'while not os.path.exists(d + "/go"): time.sleep(0.05)',
      'got = []',
      'while True:',
      '    b = a.recv(100)',
      '    if not b: break',
      '    got.append(b.decode())',
      'open(d + "/res.tmp", "w").write("|".join(got) + "|EOF"); os.rename(d + "/res.tmp", d + "/res")',
      'time.sleep(1000)',
    ].join('\n');
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', script]).trim());
    leftovers.push(pid);
    const port = String(waitForPort(dir, 'the port'));
    const client = `import socket; s = socket.create_connection(("127.0.0.1", ${port})); s.sendall(b"bye"); s.close()`;
    expect(spawnSync('python3', ['-c', client]).status).toBe(0);
    waitFor('close-wait', () =>
      spawnSync('ss', ['-tan', 'state', 'close-wait'], { encoding: 'utf8' }).stdout.includes(
        `:${port} `,
      ),
    );
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the process to die', () => !isAlive(pid));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    fs.writeFileSync(path.join(dir, 'go'), '');
    waitFor('the result', () => fs.existsSync(path.join(dir, 'res')), 10_000);
    expect(fs.readFileSync(path.join(dir, 'res'), 'utf8')).toBe('bye|EOF');
  });

  for (const leave of ['--kill', '--leave-running'] as const) {
    it(`keeps every byte past an urgent mark (${leave}; sweep 13: all of it was lost after the mark)`, () => {
      const dir = tmpDir('ckpt-tcp-urgent-');
      // Reads (after "go") what its client sent: "abc", urgent "U", "def",
      // then "ghi" once the checkpoint is over; the urgent byte with MSG_OOB.
      const script = [
        'import os, socket, time',
        `d = ${JSON.stringify(dir)}`,
        'srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)',
        'open(d + "/port.tmp", "w").write(str(srv.getsockname()[1])); os.rename(d + "/port.tmp", d + "/port")',
        'a, _ = srv.accept()',
        'while not os.path.exists(d + "/go"): time.sleep(0.05)',
        'try: oob = a.recv(1, socket.MSG_OOB).decode()',
        'except OSError: oob = "-"',
        'got = b""',
        'a.settimeout(1)',
        'try:',
        '    while len(got) < 9: got += a.recv(100)',
        'except OSError: pass',
        'open(d + "/res.tmp", "w").write(oob + "|" + got.decode()); os.rename(d + "/res.tmp", d + "/res")',
        'time.sleep(1000)',
      ].join('\n');
      const pid = Number(ckptOk(['run', '--', 'python3', '-c', script]).trim());
      leftovers.push(pid);
      const port = waitForPort(dir, 'the port');
      const client = spawn(
        'python3',
        [
          '-c',
          [
            'import os, socket, sys, time',
            `s = socket.create_connection(("127.0.0.1", ${port}))`,
            's.sendall(b"abc"); s.send(b"U", socket.MSG_OOB); s.sendall(b"def")',
            `while not os.path.exists(${JSON.stringify(`${dir}/more`)}): time.sleep(0.05)`,
            's.sendall(b"ghi"); time.sleep(60)',
          ].join('\n'),
        ],
        { stdio: 'ignore' },
      );
      leftovers.push(client.pid!);
      waitFor('the bytes to arrive', () => (queues(port)?.rx ?? 0) >= 7);
      const img = tmpImage();
      const r = ckpt(['checkpoint', String(pid), '-o', img, leave]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain('an urgent (out-of-band) byte (0x55)');
      if (leave === '--kill') {
        waitFor('the process to die', () => !isAlive(pid));
        expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
      }
      fs.writeFileSync(path.join(dir, 'more'), '');
      fs.writeFileSync(path.join(dir, 'go'), '');
      waitFor('the result', () => fs.existsSync(path.join(dir, 'res')), 10_000);
      // Left running, the urgent byte is still there to read out of band.
      const oob = leave === '--kill' ? '-' : 'U';
      expect(fs.readFileSync(path.join(dir, 'res'), 'utf8')).toBe(`${oob}|abcdefghi`);
    });
  }

  it('ckpt killed (SIGKILL) during a --kill checkpoint: its guardian lets the connection go on (sweep 13: locked and in repair mode for good)', async () => {
    const dir = tmpDir('ckpt-tcp-guardian-');
    fs.writeFileSync(path.join(dir, 'echo.py'), ECHO_SERVER);
    // The echo server, with a child holding 600 MiB: saved after the
    // server's connection is locked, it leaves time to kill ckpt.
    const hog =
      'import time; x = bytearray(600 << 20); x[::4096] = b"x" * (600 << 8); time.sleep(1000)';
    const script = `${python()} -c '${hog}' & exec ${python()} ${dir}/echo.py ${dir}`;
    const pid = Number(ckptOk(['run', '--', 'sh', '-c', script]).trim());
    leftovers.push(pid);
    const port = waitForPort(dir);
    const client = spawn(
      'python3',
      [
        '-c',
        [
          'import socket, sys, time',
          `s = socket.create_connection(("127.0.0.1", ${port})); s.settimeout(1)`,
          `log = open(${JSON.stringify(`${dir}/pings`)}, "a", buffering=1)`,
          'n = 0',
          'while True:',
          '    n += 1',
          '    try:',
          '        s.sendall(b"%d\\n" % n); log.write("ok\\n" if s.recv(100) else "eof\\n")',
          '    except OSError: log.write("fail\\n")',
          '    time.sleep(0.1)',
        ].join('\n'),
      ],
      { stdio: 'ignore' },
    );
    leftovers.push(client.pid!);
    const pings = () => {
      try {
        return fs.readFileSync(path.join(dir, 'pings'), 'utf8').split('\n').filter(Boolean);
      } catch {
        return [];
      }
    };
    waitFor('the first pings', () => pings().length >= 3);
    const ck = spawn(
      process.execPath,
      [CKPT_BIN, 'checkpoint', String(pid), '-o', tmpImage(), '--kill'],
      {
        stdio: 'ignore',
      },
    );
    waitFor('the connection to be locked', () => lockedIpv4().includes(`. ${port} `), 20_000);
    ck.kill('SIGKILL');
    await new Promise((done) => ck.once('exit', done));
    waitFor('the guardian to unlock it', () => !lockedIpv4().includes(`. ${port} `), 10_000);
    expect(isAlive(pid)).toBe(true);
    const n = pings().length;
    waitFor(
      'pings to get answers again',
      () =>
        pings()
          .slice(n)
          .filter((p) => p === 'ok').length >= 3,
      10_000,
    );
  });

  it('a thousand of them, watched by one epoll, all go on after --kill and restart', () => {
    // Sweep 12: an asyncio server with about 740 or more clients failed to
    // restart (its epoll's targets overflowed the scratch room).
    const N = 1000;
    const dir = tmpDir('ckpt-tcp-many-');
    fs.writeFileSync(path.join(dir, 'server.py'), ECHO_SERVER);
    fs.writeFileSync(path.join(dir, 'client.py'), MANY_CLIENT);
    const server = Number(
      ckptOk(['run', '--', 'python3', path.join(dir, 'server.py'), dir]).trim(),
    );
    leftovers.push(server);
    waitFor('the server to listen', () => fs.existsSync(path.join(dir, 'port')), 10_000);
    const client = spawn('python3', [path.join(dir, 'client.py'), dir, String(N)], {
      stdio: 'ignore',
      detached: true,
    });
    leftovers.push(client.pid!);
    waitFor('the client to be ready', () => fs.existsSync(path.join(dir, 'ready')), 60_000);
    const img = tmpImage();
    ckptOk(['checkpoint', String(server), '-o', img, '--kill']);
    waitFor('the server gone', () => !isAlive(server));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(server);
    // None of them is held back any more (other tests may hold their own).
    const port = fs.readFileSync(path.join(dir, 'port'), 'utf8');
    expect(lockedIpv4()).not.toMatch(new RegExp(`\\. ${port}\\b`));
    expect(result(dir)).toEqual({ before: [], after: [] });
  });

  it('being closed by the program itself (fin-wait) is refused, naming its state, and the program goes on', () => {
    const dir = tmpDir('ckpt-tcp-closing-');
    // The program shuts its own end of a connection to itself (fin-wait-2).
    const script = [
      'import os, socket, time',
      `d = ${JSON.stringify(dir)}`,
      'srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)',
      'c = socket.create_connection(srv.getsockname()); a, _ = srv.accept(); c.shutdown(socket.SHUT_WR)',
      'open(d + "/ready", "w").close()',
      'time.sleep(1000)',
    ].join('\n');
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', script]).trim());
    leftovers.push(pid);
    waitFor('the program to be ready', () => fs.existsSync(path.join(dir, 'ready')), 10_000);
    const r = ckpt(['checkpoint', String(pid), '-o', tmpImage(), '--kill']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/\(fin-wait2\) is being set up or closed; only established TCP/);
    expect(isAlive(pid)).toBe(true);
  });
});
