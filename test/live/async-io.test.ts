/**
 * Signal-driven I/O (O_ASYNC, F_SETOWN, F_SETSIG) survives checkpoint
 * --kill and restart: a program owns the read end of a pipe (itself, by
 * pid, signal 34) and a UDP socket (its process group, signal 35), both
 * O_ASYNC, and counts the signals. After restart the fcntls read the same
 * (the owner is the restored process or its group, renumbered under
 * --no-pids), and writing to the pipe or sending a datagram signals it.
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ckpt, ckptOk } from '../support/ckpt.js';
import { procState, python } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { waitFor, waitForPort } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

/**
 * Sets up the pipe (owned by init instead with ARGV[2] 'init') and the
 * UDP socket, publishes the port in ARGV[1]/port,
 * then every 50 ms writes ARGV[1]/status: its pid and group, each file's
 * owner (F_GETOWN_EX: a group as -pgid, as F_GETOWN shows it), F_GETSIG
 * and O_ASYNC, and the signals counted (and bytes drained) so far.
 */
const PROGRAM = `
import fcntl, os, signal, socket, struct, sys, time
d = sys.argv[1]
r, w = os.pipe()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))
os.set_blocking(r, False); u.setblocking(False)
counts = {'pipe': 0, 'udp': 0, 'bytes': 0, 'dgrams': 0}
def on_pipe(sig, frame):
    counts['pipe'] += 1
    try:
        counts['bytes'] += len(os.read(r, 4096))
    except BlockingIOError:
        pass
def on_udp(sig, frame):
    counts['udp'] += 1
    while True:
        try:
            u.recv(100); counts['dgrams'] += 1
        except BlockingIOError:
            break
signal.signal(34, on_pipe); signal.signal(35, on_udp)
fcntl.fcntl(r, fcntl.F_SETOWN, 1 if sys.argv[2:] == ['init'] else os.getpid()); fcntl.fcntl(r, fcntl.F_SETSIG, 34)
fcntl.fcntl(r, fcntl.F_SETFL, fcntl.fcntl(r, fcntl.F_GETFL) | os.O_ASYNC)
fcntl.fcntl(u.fileno(), fcntl.F_SETOWN, -os.getpgrp()); fcntl.fcntl(u.fileno(), fcntl.F_SETSIG, 35)
fcntl.fcntl(u.fileno(), fcntl.F_SETFL, fcntl.fcntl(u.fileno(), fcntl.F_GETFL) | os.O_ASYNC)
open(d + '/port.tmp', 'w').write(str(u.getsockname()[1])); os.rename(d + '/port.tmp', d + '/port')
def state(fd):
    kind, owner = struct.unpack('ii', fcntl.fcntl(fd, 16, bytes(8)))  # F_GETOWN_EX
    return '%d %d %d' % (-owner if kind == 2 else owner, fcntl.fcntl(fd, fcntl.F_GETSIG),
                         1 if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ASYNC else 0)
while True:
    line = '%d %d %s %s %d %d %d %d\\n' % (os.getpid(), os.getpgrp(), state(r), state(u.fileno()),
        counts['pipe'], counts['udp'], counts['bytes'], counts['dgrams'])
    open(d + '/status.tmp', 'w').write(line); os.rename(d + '/status.tmp', d + '/status')
    time.sleep(0.05)
`;

interface Status {
  pid: number;
  pgrp: number;
  pipe: { owner: number; sig: number; async: number };
  udp: { owner: number; sig: number; async: number };
  signals: { pipe: number; udp: number };
  bytes: number;
  dgrams: number;
}

function status(dir: string): Status | undefined {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, 'status'), 'utf8');
  } catch {
    return undefined;
  }
  const n = text.trim().split(' ').map(Number);
  if (n.length !== 12) return undefined;
  return {
    pid: n[0]!,
    pgrp: n[1]!,
    pipe: { owner: n[2]!, sig: n[3]!, async: n[4]! },
    udp: { owner: n[5]!, sig: n[6]!, async: n[7]! },
    signals: { pipe: n[8]!, udp: n[9]! },
    bytes: n[10]!,
    dgrams: n[11]!,
  };
}

/** The status once the process `pid` wrote one. */
function statusOf(dir: string, pid: number): Status {
  let s: Status | undefined;
  waitFor(`pid ${pid} to write its status`, () => {
    s = status(dir);
    return s?.pid === pid;
  });
  return s!;
}

/** Write `bytes` to the pipe through fd `fd` of `pid` (the write end). */
function writePipe(pid: number, fd: number, bytes: string): void {
  const f = fs.openSync(`/proc/${pid}/fd/${fd}`, 'w');
  try {
    fs.writeSync(f, bytes);
  } finally {
    fs.closeSync(f);
  }
}

async function sendDatagram(port: number): Promise<void> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) =>
    s.send('x', port, '127.0.0.1', (e) => (e ? reject(e) : resolve())),
  );
  s.close();
}

/** The fd of `pid` that is the write end of the pipe whose read end is O_ASYNC. */
function pipeWriteFd(pid: number): number {
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    const target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
    const flags = /flags:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
    if (target.startsWith('pipe:') && (Number.parseInt(flags![1]!, 8) & 1) === 1) return Number(fd);
  }
  throw new Error(`pid ${pid} has no pipe write end`);
}

/** Signals delivered both ways, checked against the counts before. */
async function expectSignals(dir: string, pid: number, port: number): Promise<void> {
  const before = statusOf(dir, pid);
  writePipe(pid, pipeWriteFd(pid), 'abc');
  await sendDatagram(port);
  waitFor('the signals to be counted', () => {
    const s = status(dir);
    return (
      s !== undefined &&
      s.pid === pid &&
      s.signals.pipe > before.signals.pipe &&
      s.signals.udp > before.signals.udp
    );
  });
  const after = statusOf(dir, pid);
  expect(after.bytes).toBe(before.bytes + 3);
  expect(after.dgrams).toBe(before.dgrams + 1);
}

async function roundTrip(noPids: boolean): Promise<void> {
  const dir = tmpDir('ckpt-async-');
  const { pid, port } = start(dir);
  const saved = statusOf(dir, pid);
  expect(saved.pipe).toEqual({ owner: pid, sig: 34, async: 1 });
  expect(saved.udp).toEqual({ owner: -saved.pgrp, sig: 35, async: 1 });
  await expectSignals(dir, pid, port);

  const img = tmpImage();
  const c = ckpt(['checkpoint', String(pid), '-o', img, '--kill']);
  expect(c.code, c.stderr).toBe(0);
  expect(c.stderr).not.toMatch(/owner/);
  waitFor('the process to die', () => procState(pid) === undefined);
  const r = ckpt(['restart', img, '-d', ...(noPids ? ['--no-pids'] : [])]);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).not.toMatch(/owner/);
  const copy = Number(r.stdout.trim());
  leftovers.push(copy);
  if (!noPids) expect(copy).toBe(pid);

  const now = statusOf(dir, copy);
  expect(now.pipe).toEqual({ owner: copy, sig: 34, async: 1 });
  expect(now.udp).toEqual({ owner: -now.pgrp, sig: 35, async: 1 });
  if (noPids) expect(now.pgrp).toBe(copy);
  await expectSignals(dir, copy, port);
}

/** Start the program with `ckpt run`; returns its pid and the UDP port. */
function start(dir: string, args: string[] = []): { pid: number; port: number } {
  const file = path.join(dir, 'async.py');
  fs.writeFileSync(file, PROGRAM);
  const pid = Number(ckptOk(['run', '--', python(), file, dir, ...args]).trim());
  leftovers.push(pid);
  return { pid, port: waitForPort(dir) };
}
describe('signal-driven I/O', () => {
  it('O_ASYNC, F_SETOWN and F_SETSIG on a pipe and a UDP socket survive --kill and restart', async () => {
    await roundTrip(false);
  });

  it('under --no-pids the owner is the restored process (and its group)', async () => {
    await roundTrip(true);
  });

  it('an owner outside the tree is dropped with a warning naming the fd; the signal and O_ASYNC stay', () => {
    const dir = tmpDir('ckpt-async-');
    const { pid } = start(dir, ['init']);
    expect(statusOf(dir, pid).pipe).toEqual({ owner: 1, sig: 34, async: 1 });
    const img = tmpImage();
    const c = ckpt(['checkpoint', String(pid), '-o', img, '--kill']);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stderr).toMatch(
      new RegExp(
        `pid ${pid} fd \\d+: its signal-driven I/O owner, process 1, is not part of the checkpointed tree`,
      ),
    );
    waitFor('the process to die', () => procState(pid) === undefined);
    const r = ckpt(['restart', img, '-d']);
    expect(r.code, r.stderr).toBe(0);
    const now = statusOf(dir, pid);
    expect(now.pipe).toEqual({ owner: 0, sig: 34, async: 1 });
    expect(now.udp).toEqual({ owner: -now.pgrp, sig: 35, async: 1 });
  });
});
