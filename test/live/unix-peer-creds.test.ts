/**
 * Peer credentials (SO_PEERCRED) of unix connections inside the tree: a
 * root server and a child that dropped to nobody before connecting, and a
 * socketpair the server made before forking. After checkpoint --kill and
 * restart each end reports the same peer process and ids as before (sweep
 * 13: the server saw its unprivileged client as root, pid and all).
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ckpt, ckptOk } from '../support/ckpt.js';
import { isAlive, python } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireRoot } from '../support/prereq.js';
import { waitFor } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

beforeAll(() => {
  requireRoot();
});

/**
 * Writes DIR/creds-N (N = 1, 2, ... each time DIR/go-N appears): the
 * SO_PEERCRED of the server's accepted end, of the client's end and of
 * both ends of the socketpair, as "pid uid gid" lines.
 */
const SCRIPT = `
import os, socket, struct, sys, time
d = sys.argv[1]
def cred(s):
    return '%d %d %d' % struct.unpack('3i', s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
pa, pb = socket.socketpair()
srv = socket.socket(socket.AF_UNIX)
srv.bind(d + '/sock'); os.chmod(d + '/sock', 0o777); srv.listen(1)
r, w = os.pipe()
child = os.fork()
if child == 0:
    os.setgid(65534); os.setuid(65534)
    c = socket.socket(socket.AF_UNIX); c.connect(d + '/sock')
    n = 1
    while True:
        c.sendall(b'?')
        c.recv(1)
        open(d + '/client-%d' % n, 'w').write(cred(c) + '\\n' + cred(pb) + '\\n')
        n += 1
        while not os.path.exists(d + '/go-%d' % n): time.sleep(0.05)
a, _ = srv.accept()
n = 1
while True:
    a.recv(1)
    open(d + '/server-%d' % n, 'w').write(cred(a) + '\\n' + cred(pa) + '\\n' + str(child) + '\\n')
    a.sendall(b'!')
    n += 1
    while not os.path.exists(d + '/go-%d' % n): time.sleep(0.05)
`;

describe('unix peer credentials', () => {
  it('an accepted connection from a child that dropped to nobody, and a socketpair, report the same peers after restart', () => {
    const dir = tmpDir('ckpt-peercred-');
    fs.chmodSync(dir, 0o777); // the child, as nobody, writes there too
    const script = path.join(dir, 'srv.py');
    fs.writeFileSync(script, SCRIPT);
    const pid = Number(ckptOk(['run', '--', python(), script, dir]).trim());
    leftovers.push(pid);
    const read = (who: string, n: number) => {
      const f = path.join(dir, `${who}-${n}`);
      waitFor(
        `${who} round ${n}`,
        () => fs.existsSync(f) && fs.readFileSync(f, 'utf8').split('\n').length >= 3,
        10_000,
      );
      return fs.readFileSync(f, 'utf8').trim().split('\n');
    };
    const [serverSees, pairA, childPid] = read('server', 1);
    const [clientSees, pairB] = read('client', 1);
    // Before: the server sees nobody's child, the child sees root's server,
    // both socketpair ends the server that made it.
    expect(serverSees).toBe(`${childPid} 65534 65534`);
    expect(clientSees).toBe(`${pid} 0 0`);
    expect(pairA).toBe(`${pid} 0 0`);
    expect(pairB).toBe(`${pid} 0 0`);

    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the server to go', () => !isAlive(pid));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    fs.writeFileSync(path.join(dir, 'go-2'), '');
    expect(read('server', 2)).toEqual([serverSees, pairA, childPid]);
    expect(read('client', 2)).toEqual([clientSees, pairB]);
  });
});

describe('file descriptors in flight', () => {
  it('a socketpair holding an fd sent with SCM_RIGHTS is refused, naming it, and the fd still arrives (sweep 13: silently lost)', () => {
    const dir = tmpDir('ckpt-inflight-');
    const script = [
      'import array, os, socket, sys, time',
      'd = sys.argv[1]',
      'a, b = socket.socketpair()',
      "f = open(d + '/secret', 'w+'); f.write('secret-data'); f.flush()",
      "a.sendmsg([b'X'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [f.fileno()]))])",
      "open(d + '/ready', 'w').close()",
      "while not os.path.exists(d + '/go'): time.sleep(0.05)",
      'msg, anc, flags, _ = b.recvmsg(1, socket.CMSG_SPACE(4))',
      "fd = array.array('i', anc[0][2])[0] if anc else -1",
      'os.lseek(fd, 0, 0) if fd >= 0 else None',
      "open(d + '/got', 'w').write(os.read(fd, 100).decode() if fd >= 0 else 'NO FD')",
      'time.sleep(1000)',
    ].join('\n');
    const pid = Number(ckptOk(['run', '--', python(), '-c', script, dir]).trim());
    leftovers.push(pid);
    waitFor('the fd to be sent', () => fs.existsSync(path.join(dir, 'ready')));
    const r = ckpt(['checkpoint', String(pid), '-o', tmpImage(), '--kill']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /unix socket \d+ has 1 file descriptor in flight \(sent with SCM_RIGHTS/,
    );
    expect(isAlive(pid)).toBe(true);
    fs.writeFileSync(path.join(dir, 'go'), '');
    waitFor('the fd to arrive', () => fs.existsSync(path.join(dir, 'got')));
    expect(fs.readFileSync(path.join(dir, 'got'), 'utf8')).toBe('secret-data');
  });
});
