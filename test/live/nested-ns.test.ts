/**
 * Namespaces the tree made besides a container's pid namespace (@ckpt/ns):
 * a container with a network namespace of its own (`ckpt run --container
 * --net`), and uts, ipc and network namespaces unshared below a subtree's
 * root. A python3 program in the namespace keeps a TCP connection over the
 * namespace's loopback and a unix socketpair busy from a second thread,
 * writing each round's number; after `--kill` and restart the numbers go
 * on with none lost or repeated, every task and thread is in the restored
 * namespace it shared at checkpoint (not the host's), `lo` is up there, the
 * connection is not the host's, and the host's hostname and network are
 * untouched. Refused at checkpoint, naming what: a namespace with another
 * interface (a veth pair), one a process outside the tree also holds, one a
 * bind mount holds.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ckpt, ckptOk } from '../support/ckpt.js';
import { isAlive, procState, python } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireCommand, requireRoot } from '../support/prereq.js';
import { childrenOf, namespaceOf, nsenter, waitFor } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

beforeAll(() => {
  requireRoot();
  for (const cmd of ['unshare', 'nsenter', 'ip', 'ipcmk', 'ipcs', 'python3', 'hostname']) {
    requireCommand(cmd);
  }
});

const PORT = 7311;

/**
 * Round N: a thread sends N over a TCP connection to itself on
 * 127.0.0.1:PORT, passes what arrives through a socketpair, and appends it
 * to DIR/log; DIR/ready once the first line is there.
 */
const PROGRAM = `
import os, socket, sys, threading, time
d = sys.argv[1]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(('127.0.0.1', ${PORT})); srv.listen()
cli = socket.create_connection(('127.0.0.1', ${PORT}))
conn, _ = srv.accept()
a, b = socket.socketpair()
log = open(d + '/log', 'a', buffering=1)
def rounds():
    n = 0
    while True:
        n += 1
        cli.sendall(b'%d\\n' % n)
        got = conn.recv(100)
        a.sendall(got)
        log.write(b.recv(100).decode())
        if n == 1:
            open(d + '/ready.tmp', 'w').close(); os.rename(d + '/ready.tmp', d + '/ready')
        time.sleep(0.05)
threading.Thread(target=rounds, daemon=True).start()
while True:
    time.sleep(1000)
`;

/** The numbers logged so far. */
function logged(dir: string): number[] {
  const text = fs.readFileSync(path.join(dir, 'log'), 'utf8');
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map(Number);
}

/** Wait until the log has grown past `count` lines, then check it counts 1, 2, 3... */
function expectCountingPast(dir: string, count: number): void {
  waitFor(`the log to pass ${count} lines`, () => logged(dir).length > count + 5, 10_000);
  const n = logged(dir);
  expect(n).toEqual(n.map((_, i) => i + 1));
}

/** The command line of `pid`, '' once it is gone (the shell's short-lived children). */
function cmdline(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

/** The python3 process running prog.py, a child of `parent`. */
function programOf(parent: number): number {
  let pid = 0;
  waitFor('the program to start', () => {
    pid = childrenOf(parent).find((c) => cmdline(c).includes('prog.py')) ?? 0;
    return pid !== 0;
  });
  return pid;
}

/** Every thread of `pid` is in namespace `ns` of `type`. */
function expectThreadsIn(pid: number, type: string, ns: string): void {
  const tids = fs.readdirSync(`/proc/${pid}/task`);
  expect(tids.length).toBeGreaterThan(1);
  for (const tid of tids) expect(fs.readlinkSync(`/proc/${pid}/task/${tid}/ns/${type}`)).toBe(ns);
}

/**
 * Whether the host's network namespace has a socket listening on PORT (not
 * one in TIME-WAIT another run left).
 */
function hostHasPort(): boolean {
  const listening = `:${PORT.toString(16).toUpperCase().padStart(4, '0')} 00000000:0000 0A `;
  return fs.readFileSync('/proc/self/net/tcp', 'utf8').includes(listening);
}

/** The loopback interface of the network namespace of `pid`, as `ip -br link` shows it. */
function loopbackOf(pid: number): string {
  return nsenter(pid, ['-n'], ['ip', '-br', 'link', 'show', 'lo']);
}

describe('namespaces the tree made', () => {
  it('a container with a network namespace of its own comes back in a new one, its TCP connection and socketpair going on', () => {
    const dir = tmpDir('ckpt-netns-');
    fs.writeFileSync(path.join(dir, 'prog.py'), PROGRAM);
    // The init's child was cloned before restart made the namespace: it has to enter it.
    const script = `${python()} ${dir}/prog.py ${dir} & wait`;
    const init = Number(ckptOk(['run', '--container', '--net', '--', 'sh', '-c', script]).trim());
    leftovers.push(init);
    const prog = programOf(init);
    waitFor('the first round', () => fs.existsSync(path.join(dir, 'ready')), 10_000);
    const saved = namespaceOf(init, 'net');
    expect(saved).not.toBe(namespaceOf('self', 'net'));
    expect(hostHasPort()).toBe(false);

    const img = tmpImage();
    ckptOk(['checkpoint', String(init), '-o', img, '--kill', '--container']);
    waitFor('the container to die', () => procState(init) === undefined);
    const before = logged(dir).length;
    expect(ckptOk(['info', img])).toMatch(/net_ns/);

    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(init);
    const net = namespaceOf(init, 'net');
    expect(net).not.toBe(namespaceOf('self', 'net'));
    expect(namespaceOf(prog, 'net')).toBe(net);
    expectThreadsIn(prog, 'net', net);
    expect(loopbackOf(init)).toMatch(/\bUP\b/);
    expectCountingPast(dir, before);
    expect(hostHasPort()).toBe(false);
  });

  it("uts, ipc and network namespaces unshared below a subtree's root come back as new ones, shared as before; the host's are untouched", () => {
    const dir = tmpDir('ckpt-nested-ns-');
    fs.writeFileSync(path.join(dir, 'prog.py'), PROGRAM);
    const inner = [
      'hostname ckpt-inner',
      'ip link set lo up',
      `ipcmk -Q > ${dir}/queue`,
      'sleep 1000 &',
      `${python()} ${dir}/prog.py ${dir} &`,
      'wait',
    ].join('\n');
    const outer = `unshare --ipc --uts --net sh -c '${inner}' & wait`;
    const root = Number(ckptOk(['run', '--', 'sh', '-c', outer]).trim());
    leftovers.push(root);
    let shell = 0;
    waitFor('the inner shell', () => {
      shell = childrenOf(root)[0] ?? 0;
      return shell !== 0 && namespaceOf(shell, 'net') !== namespaceOf(root, 'net');
    });
    const prog = programOf(shell);
    waitFor('the first round', () => fs.existsSync(path.join(dir, 'ready')), 10_000);
    const sleeper = childrenOf(shell).find((c) => cmdline(c).startsWith('sleep\x001000'))!;
    expect(sleeper).toBeGreaterThan(0);
    // Killing the root alone would leave them running (restored or not).
    leftovers.push(shell, prog, sleeper);
    const queueId = fs.readFileSync(path.join(dir, 'queue'), 'utf8').match(/\d+/)![0];
    const hostName = os.hostname();

    const img = tmpImage();
    ckptOk(['checkpoint', String(root), '-o', img, '--kill']);
    waitFor('the tree to die', () => procState(root) === undefined);
    const before = logged(dir).length;

    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(root);
    for (const type of ['uts', 'ipc', 'net']) {
      expect(namespaceOf(root, type)).toBe(namespaceOf('self', type));
      const ns = namespaceOf(shell, type);
      expect(ns).not.toBe(namespaceOf(root, type));
      expect(namespaceOf(prog, type)).toBe(ns);
      expect(namespaceOf(sleeper, type)).toBe(ns);
      expectThreadsIn(prog, type, ns);
    }
    expect(nsenter(shell, ['-u'], ['hostname']).trim()).toBe('ckpt-inner');
    expect(os.hostname()).toBe(hostName);
    expect(nsenter(shell, ['-i'], ['ipcs', '-q', '-i', queueId])).toContain(queueId);
    expect(loopbackOf(shell)).toMatch(/\bUP\b/);
    expectCountingPast(dir, before);
    expect(hostHasPort()).toBe(false);
  });
});

describe('namespaces restart would not make the same', () => {
  it('a network namespace with an interface besides lo is refused, naming it, and the container goes on', () => {
    const script = 'ip link add ckpt-v0 type veth peer name ckpt-v1 && sleep 1000';
    const init = Number(ckptOk(['run', '--container', '--net', '--', 'sh', '-c', script]).trim());
    leftovers.push(init);
    waitFor('the veth pair', () =>
      fs.readFileSync(`/proc/${init}/net/dev`, 'utf8').includes('ckpt-v0'),
    );
    const r = ckpt(['checkpoint', String(init), '-o', tmpImage(), '--kill', '--container']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/network namespace net:\[\d+\], which has interface\(s\) .*ckpt-v0/);
    expect(isAlive(init)).toBe(true);
    expect(procState(init)).not.toBe('t');
  });

  it("a subtree's root with a mount namespace of its own is refused (its mounts are not saved)", () => {
    const pid = Number(ckptOk(['run', '--', 'unshare', '-m', 'sleep', '1000']).trim());
    leftovers.push(pid);
    waitFor('unshare to exec sleep', () =>
      fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep\x00'),
    );
    const r = ckpt(['checkpoint', String(pid), '-o', tmpImage(), '--kill']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `pid ${pid} is in mount namespace mnt:\\[\\d+\\], not ckpt's .*its mounts are not checkpointed`,
      ),
    );
    expect(isAlive(pid)).toBe(true);
  });

  it('the process that started the root in its namespace (unshare --fork) is only warned about, and the root comes back in a new one', () => {
    const launcher = Number(
      ckptOk(['run', '--', 'unshare', '--fork', '-n', 'sleep', '1000']).trim(),
    );
    leftovers.push(launcher);
    let pid = 0;
    waitFor('the sleeper', () => {
      pid = childrenOf(launcher).find((c) => cmdline(c).startsWith('sleep\x00')) ?? 0;
      return pid !== 0;
    });
    leftovers.push(pid);
    const img = tmpImage();
    const r = ckpt(['checkpoint', String(pid), '-o', img, '--kill']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      new RegExp(`pid ${launcher} outside the checkpointed tree also holds the net namespace`),
    );
    waitFor('the sleeper gone', () => procState(pid) === undefined);
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    expect(namespaceOf(pid, 'net')).not.toBe(namespaceOf('self', 'net'));
  });

  it('a namespace a process outside the tree also holds is refused, naming the process', () => {
    const pid = Number(ckptOk(['run', '--', 'unshare', '-n', 'sleep', '1000']).trim());
    leftovers.push(pid);
    waitFor('unshare to exec sleep', () =>
      fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep\x00'),
    );
    const outside = Number(
      ckptOk(['run', '--', 'nsenter', '-t', String(pid), '-n', 'sleep', '1000']).trim(),
    );
    leftovers.push(outside);
    waitFor('nsenter to exec sleep', () => namespaceOf(outside, 'net') === namespaceOf(pid, 'net'));
    const r = ckpt(['checkpoint', String(pid), '-o', tmpImage(), '--kill']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`which pid ${outside} (sleep), outside the tree, also holds`);
    expect(isAlive(pid)).toBe(true);
  });

  it('a namespace a bind mount holds is refused, naming the mount', () => {
    const file = path.join(tmpDir('ckpt-nsfs-'), 'netns');
    fs.writeFileSync(file, '');
    const pid = Number(ckptOk(['run', '--', 'unshare', `--net=${file}`, 'sleep', '1000']).trim());
    leftovers.push(pid);
    try {
      waitFor('unshare to exec sleep', () =>
        fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('sleep\x00'),
      );
      const r = ckpt(['checkpoint', String(pid), '-o', tmpImage(), '--kill']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`which a bind mount at ${file} also holds`);
      expect(isAlive(pid)).toBe(true);
    } finally {
      execFileSync('umount', [file]);
    }
  });
});
