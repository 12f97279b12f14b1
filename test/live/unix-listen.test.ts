/**
 * Listening unix sockets whose file is not where bind() put it (python3
 * servers): one renamed after bind (as the JVM does with its attach
 * socket) comes back under its new name and serves; one whose file was
 * removed comes back without a file, and the program runs on. A --no-pids
 * copy restarted beside the running original is refused, since its socket
 * file belongs to the original's open socket; the original keeps serving.
 * A connected socket still waiting to be accepted is refused saying so,
 * and the program runs on; one whose other end is closed comes back.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ckpt, ckptOk } from '../support/ckpt.js';
import { isAlive } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { waitFor } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

/** A server bound at DIR/srv.sock.tmp that renames or removes its file, then answers "hi". */
function startServer(mode: 'rename' | 'unlink'): { pid: number; dir: string } {
  const dir = tmpDir('ckpt-unix-listen-');
  const script = [
    'import socket, os, sys',
    `d = ${JSON.stringify(dir)}`,
    's = socket.socket(socket.AF_UNIX)',
    's.bind(d + "/srv.sock.tmp")',
    mode === 'rename'
      ? 'os.rename(d + "/srv.sock.tmp", d + "/srv.sock")'
      : 'os.unlink(d + "/srv.sock.tmp")',
    's.listen()',
    'open(d + "/ready", "w").close()',
    'while True:',
    '    c, _ = s.accept(); c.sendall(b"hi"); c.close()',
  ].join('\n');
  const pid = Number(ckptOk(['run', '--', 'python3', '-c', script]).trim());
  leftovers.push(pid);
  waitFor('the server to listen', () => fs.existsSync(path.join(dir, 'ready')), 10_000);
  return { pid, dir };
}

/** Connect to the unix socket at `file` and read what it says. */
function ask(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(file);
    let got = '';
    c.on('data', (d) => {
      got += d.toString();
    });
    c.on('end', () => resolve(got));
    c.on('error', reject);
  });
}

describe('a listening unix socket whose file moved', () => {
  it('renamed after bind: comes back under its new name and serves', async () => {
    const { pid, dir } = startServer('rename');
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the server gone', () => !isAlive(pid));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    expect(fs.existsSync(path.join(dir, 'srv.sock.tmp'))).toBe(false);
    expect(fs.lstatSync(path.join(dir, 'srv.sock')).isSocket()).toBe(true);
    expect(await ask(path.join(dir, 'srv.sock'))).toBe('hi');
  });

  it('removed after bind: comes back without a file, and runs on', () => {
    const { pid, dir } = startServer('unlink');
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the server gone', () => !isAlive(pid));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('srv.sock'))).toEqual([]);
    expect(isAlive(pid)).toBe(true);
  });

  it('bound with a relative path (postfix): bound again from its directory, the stale file replaced (sweep 12)', async () => {
    const dir = tmpDir('ckpt-unix-relative-');
    const script = [
      'import socket, os, sys',
      `os.chdir(${JSON.stringify(dir)})`,
      's = socket.socket(socket.AF_UNIX)',
      's.bind("public.sock")',
      's.listen()',
      'open("ready", "w").close()',
      'while True:',
      '    c, _ = s.accept(); c.sendall(s.getsockname().encode()); c.close()',
    ].join('\n');
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', script]).trim());
    leftovers.push(pid);
    waitFor('the server to listen', () => fs.existsSync(path.join(dir, 'ready')), 10_000);
    expect(await ask(path.join(dir, 'public.sock'))).toBe('public.sock');
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the server gone', () => !isAlive(pid));
    // The killed server's file stays behind, as postfix's do.
    expect(fs.lstatSync(path.join(dir, 'public.sock')).isSocket()).toBe(true);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    // Its own name is still the relative one, and nothing was bound where restart ran.
    expect(await ask(path.join(dir, 'public.sock'))).toBe('public.sock');
    expect(fs.existsSync(path.join(process.cwd(), 'public.sock'))).toBe(false);
  });

  it("a server's own sockets on fds 0 and 1 (inetd wait-style listener, syslogd's /dev/log) come back as its sockets (sweep 12)", async () => {
    const dir = tmpDir('ckpt-stdio-sockets-');
    const script = [
      'import os, socket, sys, threading',
      `d = ${JSON.stringify(dir)}`,
      't = socket.socket(); t.bind(("127.0.0.1", 0)); t.listen(); os.dup2(t.fileno(), 0); t.close()',
      'u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); u.bind(d + "/log.sock"); os.dup2(u.fileno(), 1); u.close()',
      'l = socket.socket(fileno=0); g = socket.socket(fileno=1)',
      'def logs():',
      '    while True:',
      '        data = g.recv(100); open(d + "/got", "ab").write(data + b"\\n")',
      'threading.Thread(target=logs, daemon=True).start()',
      'open(d + "/port.tmp", "w").write(str(l.getsockname()[1])); os.rename(d + "/port.tmp", d + "/port")',
      'while True:',
      // The client closes first: no TIME_WAIT of the server's holds the port.
      '    c, _ = l.accept(); c.sendall(b"hi"); c.recv(1); c.close()',
    ].join('\n');
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', script]).trim());
    leftovers.push(pid);
    waitFor('the server to listen', () => fs.existsSync(path.join(dir, 'port')), 10_000);
    const port = Number(fs.readFileSync(path.join(dir, 'port'), 'utf8'));
    const askTcp = () =>
      new Promise<string>((resolve, reject) => {
        const c = net.createConnection(port, '127.0.0.1');
        let got = '';
        c.on('data', (d) => {
          got += d.toString();
          c.end();
        });
        c.on('close', () => resolve(got));
        c.on('error', reject);
      });
    const log = (line: string) =>
      execFileSync('python3', [
        '-c',
        `import socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b${JSON.stringify(line)}, ${JSON.stringify(path.join(dir, 'log.sock'))})`,
      ]);
    expect(await askTcp()).toBe('hi');
    log('before');
    waitFor('the first line logged', () => fs.existsSync(path.join(dir, 'got')));
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the server gone', () => !isAlive(pid));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    for (const fd of [0, 1]) expect(fs.readlinkSync(`/proc/${pid}/fd/${fd}`)).toMatch(/^socket:/);
    expect(await askTcp()).toBe('hi');
    log('after');
    waitFor('the line logged after the restart', () =>
      fs.readFileSync(path.join(dir, 'got'), 'utf8').includes('after'),
    );
    expect(fs.readFileSync(path.join(dir, 'got'), 'utf8')).toBe('before\nafter\n');
  });

  it('a --no-pids copy beside the running original is refused; the original serves on', async () => {
    const { pid, dir } = startServer('rename');
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--leave-running']);
    const r = ckpt(['restart', img, '-d', '--no-pids']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `${path.join(dir, 'srv.sock')} belongs to socket:\\[\\d+\\], which is still open \\(the original still running\\?\\)`,
      ),
    );
    expect(r.stdout).toBe('');
    expect(await ask(path.join(dir, 'srv.sock'))).toBe('hi');
  });

  it('a connected socket whose other end is not accepted is refused saying so, and runs on', () => {
    const dir = tmpDir('ckpt-unix-peer-');
    const name = 'b"\\0ckpt-backlog-" + str(os.getpid()).encode()';
    const script = [
      'import socket, os, time',
      `l = socket.socket(socket.AF_UNIX); l.bind(${name}); l.listen()`,
      `c = socket.socket(socket.AF_UNIX); c.connect(${name})`,
      `open(${JSON.stringify(`${dir}/ready`)}, "w").close()`,
      'time.sleep(100)',
    ].join('\n');
    const pid = Number(ckptOk(['run', '--', 'python3', '-c', script]).trim());
    leftovers.push(pid);
    waitFor('the program to be ready', () => fs.existsSync(path.join(dir, 'ready')), 10_000);
    const r = ckpt(['checkpoint', String(pid), '-o', tmpImage(), '--kill']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `^ckpt: error: pid ${pid} fd \\d: unix socket \\d+ is connected, but the listening socket it connected to has not accepted it yet; it cannot be restored`,
      ),
    );
    expect(isAlive(pid)).toBe(true);
  });

  for (const type of ['SOCK_STREAM', 'SOCK_SEQPACKET'] as const) {
    it(`a ${type} socket whose other end is closed (the JDK's) comes back: its bytes, then the end of file; writes fail`, () => {
      const dir = tmpDir('ckpt-unix-closed-');
      const script = [
        'import socket, os, time',
        `d = ${JSON.stringify(dir)}`,
        `a, b = socket.socketpair(socket.AF_UNIX, socket.${type}); b.sendall(b"left"); b.close()`,
        'open(d + "/ready", "w").close()',
        'while not os.path.exists(d + "/go"): time.sleep(0.05)',
        'got = [a.recv(100).decode(), repr(a.recv(100))]',
        'try:',
        '    a.send(b"x"); got.append("sent")',
        'except BrokenPipeError:',
        '    got.append("EPIPE")',
        'open(d + "/result.tmp", "w").write(" ".join(got)); os.rename(d + "/result.tmp", d + "/result")',
        'time.sleep(100)',
      ].join('\n');
      const pid = Number(ckptOk(['run', '--', 'python3', '-c', script]).trim());
      leftovers.push(pid);
      waitFor('the program to be ready', () => fs.existsSync(path.join(dir, 'ready')), 10_000);
      const img = tmpImage();
      ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
      waitFor('the program gone', () => !isAlive(pid));
      expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
      fs.writeFileSync(path.join(dir, 'go'), '');
      waitFor('the result', () => fs.existsSync(path.join(dir, 'result')), 10_000);
      expect(fs.readFileSync(path.join(dir, 'result'), 'utf8')).toBe("left b'' EPIPE");
    });
  }
});
