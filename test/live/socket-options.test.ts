/**
 * The options a program sets on its waiting sockets come back with them
 * (sweep 9: dnsmasq drops every query whose IP_PKTINFO it does not get): a
 * python3 program in a container keeps a UDP socket with IP_PKTINFO,
 * IP_TOS and a 1 MiB receive buffer, and a listening TCP socket with
 * TCP_DEFER_ACCEPT and TCP_NODELAY. After `--kill` and restart every
 * option reads the same, and a datagram sent to it arrives with its
 * IP_PKTINFO message. Sweep 10: the UDP socket is bound to `lo`
 * (SO_BINDTODEVICE), and a second one has a classic BPF filter that drops
 * everything (SO_ATTACH_FILTER); both hold after restart. The backlog
 * of IPv4, IPv6 and unix listeners (listen(3), listen(7), listen(5)) is
 * kept (it was the system's maximum after restart before; `ss` shows it).
 * A TCP listener without SO_REUSEADDR is bound again while connections it
 * closed wait in TIME_WAIT on its port (they are ended first).
 * Options that are not ints (SO_RCVTIMEO, SO_SNDTIMEO, SO_LINGER,
 * TCP_CONGESTION) on a listener, both ends of a connection and a UDP
 * socket read the same after restart, and a recv with SO_RCVTIMEO times
 * out (it blocked for good when only int options were kept).
 */
import { execFileSync } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ckptOk } from '../support/ckpt.js';
import { isAlive, python } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { waitFor, waitForPort } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

/** Writes DIR/port and DIR/before, then answers one datagram by writing DIR/after. */
const PROGRAM = `
import ctypes, json, os, socket, struct, sys
d = sys.argv[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.IPPROTO_IP, 8, 1)
u.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)
u.setsockopt(socket.SOL_SOCKET, 33, 1 << 20)
u.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b'lo')
u.bind(('127.0.0.1', 0))
# A second UDP socket whose classic BPF filter drops everything ("ret #0").
f = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
drop = ctypes.create_string_buffer(struct.pack('HBBI', 0x06, 0, 0, 0))
fprog = struct.pack('HxxxxxxQ', 1, ctypes.addressof(drop))
f.setsockopt(socket.SOL_SOCKET, 26, fprog)  # SO_ATTACH_FILTER
f.bind(('127.0.0.1', 0)); f.setblocking(False)
t = socket.socket()
t.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 5)
t.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
t.bind(('127.0.0.1', 0)); t.listen()
def state():
    return {'pktinfo': u.getsockopt(socket.IPPROTO_IP, 8),
            'tos': u.getsockopt(socket.IPPROTO_IP, socket.IP_TOS),
            'rcvbuf': u.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
            'defer': t.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) > 0,
            'nodelay': t.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
            'device': u.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b'\\0').decode()}
def put(name, value):
    open(d + '/' + name + '.tmp', 'w').write(value); os.rename(d + '/' + name + '.tmp', d + '/' + name)
put('before', json.dumps(state()))
put('fport', str(f.getsockname()[1]))
put('port', str(u.getsockname()[1]))
data, anc, flags, addr = u.recvmsg(100, 1024)
out = state()
out['data'] = data.decode()
out['cmsg'] = [[level, kind] for level, kind, _ in anc]
try:
    f.recv(100); out['filtered'] = False
except BlockingIOError:
    out['filtered'] = True
put('after', json.dumps(out))
`;

describe('the options of a waiting socket', () => {
  it('come back with it: IP_PKTINFO, IP_TOS, the receive buffer, TCP_DEFER_ACCEPT, TCP_NODELAY', async () => {
    const dir = tmpDir('ckpt-sockopt-');
    fs.writeFileSync(path.join(dir, 'prog.py'), PROGRAM);
    const pid = Number(ckptOk(['run', '--', 'python3', path.join(dir, 'prog.py'), dir]).trim());
    leftovers.push(pid);
    waitFor('the sockets ready', () => fs.existsSync(path.join(dir, 'port')), 10_000);
    const before = JSON.parse(fs.readFileSync(path.join(dir, 'before'), 'utf8'));
    expect(before).toMatchObject({ pktinfo: 1, tos: 0x10, defer: true, nodelay: 1, device: 'lo' });
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the program gone', () => !isAlive(pid));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    const port = Number(fs.readFileSync(path.join(dir, 'port'), 'utf8'));
    const fport = Number(fs.readFileSync(path.join(dir, 'fport'), 'utf8'));
    const s = dgram.createSocket('udp4');
    // First to the filtered socket: its filter drops it, as before the checkpoint.
    await new Promise<void>((resolve) => s.send('dropped', fport, '127.0.0.1', () => resolve()));
    await new Promise<void>((resolve) => s.send('query', port, '127.0.0.1', () => resolve()));
    s.close();
    waitFor('the datagram answered', () => fs.existsSync(path.join(dir, 'after')), 10_000);
    const after = JSON.parse(fs.readFileSync(path.join(dir, 'after'), 'utf8'));
    // IPPROTO_IP 0, IP_PKTINFO 8: the control message dnsmasq needs.
    expect(after).toEqual({ ...before, data: 'query', cmsg: [[0, 8]], filtered: true });
  });
});

/** Listens with three backlogs, then writes DIR/ready. */
const LISTENERS = `
import os, socket, sys, time
d = sys.argv[1]
a = socket.socket(); a.bind(('127.0.0.1', 0)); a.listen(3)
b = socket.socket(socket.AF_INET6); b.bind(('::1', 0)); b.listen(7)
u = socket.socket(socket.AF_UNIX); u.bind(d + '/sock'); u.listen(5)
open(d + '/ready', 'w').close()
while True:
    time.sleep(1000)
`;

/** The backlogs (ss's Send-Q for a listener) of `pid`'s listening sockets, by kind, sorted. */
function backlogs(pid: number): string[] {
  const out: string[] = [];
  for (const [kind, flags] of [
    ['tcp', '-Hltnp'],
    ['unix', '-Hlxp'],
  ] as const) {
    for (const line of execFileSync('ss', [flags], { encoding: 'utf8' }).split('\n')) {
      if (!line.includes(`pid=${pid},`)) continue;
      const f = line.trim().split(/\s+/);
      // tcp: State Recv-Q Send-Q Local...; unix: Netid State Recv-Q Send-Q ...
      out.push(`${kind} ${kind === 'tcp' ? f[2] : f[3]}`);
    }
  }
  return out.sort();
}

describe('the backlog of a listening socket', () => {
  it('is what listen(2) was given after restart, for IPv4, IPv6 and unix listeners', () => {
    const dir = tmpDir('ckpt-backlog-');
    fs.writeFileSync(path.join(dir, 'prog.py'), LISTENERS);
    const pid = Number(ckptOk(['run', '--', 'python3', path.join(dir, 'prog.py'), dir]).trim());
    leftovers.push(pid);
    waitFor('the listeners', () => fs.existsSync(path.join(dir, 'ready')), 10_000);
    expect(backlogs(pid)).toEqual(['tcp 3', 'tcp 7', 'unix 5']);
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the program gone', () => !isAlive(pid));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    expect(backlogs(pid)).toEqual(['tcp 3', 'tcp 7', 'unix 5']);
  });
});

describe('a TCP listener without SO_REUSEADDR', () => {
  it('is bound again though connections it closed wait in TIME_WAIT on its port', async () => {
    const dir = tmpDir('ckpt-timewait-');
    const script = [
      'import os, socket, sys',
      `d = ${JSON.stringify(dir)}`,
      's = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()',
      'open(d + "/port.tmp", "w").write(str(s.getsockname()[1])); os.rename(d + "/port.tmp", d + "/port")',
      // The server closes first: its end waits in TIME_WAIT.
      'while True:',
      '    c, _ = s.accept(); c.sendall(b"hi"); c.close()',
    ].join('\n');
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', script]).trim());
    leftovers.push(pid);
    const port = waitForPort(dir);
    const ask = () =>
      new Promise<string>((resolve, reject) => {
        const c = net.createConnection(port, '127.0.0.1');
        let got = '';
        c.on('data', (d) => {
          got += d.toString();
        });
        c.on('end', () => resolve(got));
        c.on('error', reject);
      });
    expect(await ask()).toBe('hi');
    const timeWait = () =>
      execFileSync('ss', ['-Htan', 'state', 'time-wait', `( sport = :${port} )`], {
        encoding: 'utf8',
      }).trim();
    // Asynchronously: the client's end closes from the event loop.
    for (let i = 0; i < 100 && timeWait() === ''; i++) await new Promise((r) => setTimeout(r, 50));
    expect(timeWait()).not.toBe('');
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the program gone', () => !isAlive(pid));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    expect(await ask()).toBe('hi');
  });
});

/**
 * Writes DIR/port and DIR/before, waits for DIR/go, then writes DIR/after:
 * the options again and how long a recv waited on the UDP socket and on
 * the client end of the connection (each with a 0.3 s SO_RCVTIMEO).
 */
const STRUCT_OPTIONS = `
import json, os, socket, struct, sys, time
d = sys.argv[1]
SO_RCVTIMEO, SO_SNDTIMEO, SO_LINGER, TCP_CONGESTION = 20, 21, 13, 13
def tune(s, rcv, snd, linger, cc=None):
    s.setsockopt(socket.SOL_SOCKET, SO_RCVTIMEO, struct.pack('ll', *rcv))
    s.setsockopt(socket.SOL_SOCKET, SO_SNDTIMEO, struct.pack('ll', *snd))
    s.setsockopt(socket.SOL_SOCKET, SO_LINGER, struct.pack('ii', *linger))
    if cc: s.setsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, cc.encode())
def read(s, tcp):
    out = {'rcvtimeo': struct.unpack('ll', s.getsockopt(socket.SOL_SOCKET, SO_RCVTIMEO, 16)),
           'sndtimeo': struct.unpack('ll', s.getsockopt(socket.SOL_SOCKET, SO_SNDTIMEO, 16)),
           'linger': struct.unpack('ii', s.getsockopt(socket.SOL_SOCKET, SO_LINGER, 8))}
    if tcp: out['cc'] = s.getsockopt(socket.IPPROTO_TCP, TCP_CONGESTION, 16).rstrip(b'\\0').decode()
    return out
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
tune(u, (0, 300000), (1, 0), (1, 4))
u.bind(('127.0.0.1', 0))
t = socket.socket()
tune(t, (5, 0), (6, 500000), (1, 9), 'reno')
t.bind(('127.0.0.1', 0)); t.listen()
c = socket.create_connection(t.getsockname())
tune(c, (0, 300000), (2, 0), (1, 3), 'reno')
# The accepted end inherits the listener's.
a, _ = t.accept()
def state():
    return {'udp': read(u, False), 'listener': read(t, True), 'client': read(c, True),
            'accepted': read(a, True)}
def waited(s):
    start = time.monotonic()
    try:
        s.recv(100)
        return 'data'
    except (BlockingIOError, TimeoutError, socket.timeout):
        return round(time.monotonic() - start, 2)
def put(name, value):
    open(d + '/' + name + '.tmp', 'w').write(value); os.rename(d + '/' + name + '.tmp', d + '/' + name)
put('before', json.dumps(state()))
put('port', str(u.getsockname()[1]))
while not os.path.exists(d + '/go'):
    time.sleep(0.05)
out = state()
out['udpWaited'] = waited(u)
out['clientWaited'] = waited(c)
put('after', json.dumps(out))
`;

describe('the struct and string options of a socket', () => {
  it('come back with it: SO_RCVTIMEO, SO_SNDTIMEO, SO_LINGER, TCP_CONGESTION (listener, connection, UDP)', () => {
    const available = fs.readFileSync(
      '/proc/sys/net/ipv4/tcp_available_congestion_control',
      'utf8',
    );
    expect(available.split(/\s+/)).toContain('reno');
    const dir = tmpDir('ckpt-sockopt-struct-');
    fs.writeFileSync(path.join(dir, 'prog.py'), STRUCT_OPTIONS);
    const pid = Number(ckptOk(['run', '--', python(), path.join(dir, 'prog.py'), dir]).trim());
    leftovers.push(pid);
    waitForPort(dir);
    const before = JSON.parse(fs.readFileSync(path.join(dir, 'before'), 'utf8'));
    expect(before).toMatchObject({
      udp: { rcvtimeo: [0, 300000], sndtimeo: [1, 0], linger: [1, 4] },
      listener: { rcvtimeo: [5, 0], sndtimeo: [6, 500000], linger: [1, 9], cc: 'reno' },
      client: { rcvtimeo: [0, 300000], sndtimeo: [2, 0], linger: [1, 3], cc: 'reno' },
      accepted: { rcvtimeo: [5, 0], sndtimeo: [6, 500000], linger: [1, 9], cc: 'reno' },
    });
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the program gone', () => !isAlive(pid));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    fs.writeFileSync(path.join(dir, 'go'), '');
    // Without SO_RCVTIMEO the recv blocks for good and `after` never comes.
    waitFor('the recvs timed out', () => fs.existsSync(path.join(dir, 'after')), 10_000);
    const after = JSON.parse(fs.readFileSync(path.join(dir, 'after'), 'utf8'));
    const { udpWaited, clientWaited, ...options } = after;
    expect(options).toEqual(before);
    for (const waited of [udpWaited, clientWaited]) {
      expect(waited).toBeGreaterThanOrEqual(0.25);
      expect(waited).toBeLessThan(2);
    }
  });
});
