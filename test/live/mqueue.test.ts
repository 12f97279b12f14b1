/**
 * POSIX message queues (@ckpt/ipc's mqueue.ts), with python3 and ctypes:
 * - in a container (its own ipc namespace): a named queue with messages of
 *   two priorities, a second fd on it (write-only, non-blocking) and an
 *   unlinked queue (non-blocking) with a message come back after `--kill` and restart:
 *   the same limits, mode, flags and messages in the same order, the
 *   unlinked one still unlinked; `--leave-running` leaves every message in
 *   place, in order;
 * - in a subtree (the host's namespace): the queue outlives the process,
 *   and the restored process finds its messages once, not twice; a queue
 *   removed meanwhile is made again, empty, with a warning;
 * - a queue with a notification registered is refused, and the program
 *   runs on.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ckpt, ckptOk } from '../support/ckpt.js';
import { isAlive } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { waitFor } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

/** ctypes bindings and the program: `prog.py DIR NAME [notify]`. */
const PROGRAM = `
import ctypes, fcntl, json, os, sys, time
d, name = sys.argv[1], sys.argv[2].encode()
libc = ctypes.CDLL(None, use_errno=True)
class Attr(ctypes.Structure):
    # struct mq_attr: four longs, then four reserved ones the kernel writes too.
    _fields_ = [('flags', ctypes.c_long), ('maxmsg', ctypes.c_long), ('msgsize', ctypes.c_long), ('curmsgs', ctypes.c_long), ('pad', ctypes.c_long * 4)]
libc.mq_open.restype = ctypes.c_int
def mq_open(n, flags, mode=0, attr=None):
    fd = libc.mq_open(n, flags, mode, ctypes.byref(attr) if attr else None)
    if fd < 0: raise OSError(ctypes.get_errno(), 'mq_open ' + n.decode())
    return fd
def send(fd, data, prio):
    assert libc.mq_send(fd, data, len(data), prio) == 0
def receive_all(fd):
    out, buf, prio = [], ctypes.create_string_buffer(64), ctypes.c_uint()
    while True:
        n = libc.mq_timedreceive(fd, buf, 64, ctypes.byref(prio), ctypes.byref((ctypes.c_long * 2)()))
        if n < 0: return out
        out.append([buf.raw[:n].decode(), prio.value])
def attrs(fd):
    a = Attr(); libc.mq_getattr(fd, ctypes.byref(a)); return [a.maxmsg, a.msgsize, a.curmsgs]
os.umask(0)
q = mq_open(name, os.O_RDWR | os.O_CREAT, 0o640, Attr(0, 5, 64, 0))
for data, prio in [(b'low', 1), (b'high', 5), (b'low2', 1)]: send(q, data, prio)
w = mq_open(name, os.O_WRONLY | os.O_NONBLOCK)
ghost = mq_open(name + b'-ghost', os.O_RDWR | os.O_CREAT | os.O_NONBLOCK, 0o600, Attr(0, 2, 64, 0))
libc.mq_unlink(name + b'-ghost')
send(ghost, b'unseen', 0)
# A queue no process holds open, with a message waiting for a later reader.
closed = mq_open(name + b'-closed', os.O_RDWR | os.O_CREAT, 0o604, Attr(0, 3, 32, 0))
send(closed, b'later', 2)
os.close(closed)
if sys.argv[3:] == ['notify']:
    sev = (ctypes.c_int * 16)(); sev[3] = 1  # struct sigevent: sigev_notify = SIGEV_NONE
    assert libc.mq_notify(ghost, ctypes.byref(sev)) == 0
open(d + '/ready', 'w').close()
while not os.path.exists(d + '/go'): time.sleep(0.05)
out = {'attrs': attrs(q), 'mode': oct(os.fstat(q).st_mode & 0o777),
       'wflags': fcntl.fcntl(w, fcntl.F_GETFL) & (os.O_ACCMODE | os.O_NONBLOCK) == os.O_WRONLY | os.O_NONBLOCK,
       'messages': receive_all(q), 'ghost': receive_all(ghost)}
try:
    mq_open(name + b'-ghost', os.O_RDONLY); out['ghostName'] = 'exists'
except OSError as e:
    out['ghostName'] = 'gone' if e.errno == 2 else str(e)
closed = mq_open(name + b'-closed', os.O_RDONLY | os.O_NONBLOCK)
out['closed'] = [attrs(closed), oct(os.fstat(closed).st_mode & 0o777), receive_all(closed)]
libc.mq_unlink(name + b'-closed')
json.dump(out, open(d + '/result.tmp', 'w')); os.rename(d + '/result.tmp', d + '/result')
time.sleep(100)
`;

const EXPECTED = {
  attrs: [5, 64, 3],
  mode: '0o640',
  wflags: true,
  messages: [
    ['high', 5],
    ['low', 1],
    ['low2', 1],
  ],
  ghost: [['unseen', 0]],
  ghostName: 'gone',
  closed: [[3, 32, 1], '0o604', [['later', 2]]],
};

function start(container: boolean, extra: string[] = []) {
  const dir = tmpDir('ckpt-mq-');
  const name = `/ckpt-mq-${path.basename(dir)}`;
  fs.writeFileSync(path.join(dir, 'prog.py'), PROGRAM);
  const cmd = ['python3', path.join(dir, 'prog.py'), dir, name, ...extra];
  let pid: number;
  if (container) {
    pid = Number(ckptOk(['run', '--container', '--', ...cmd]).trim());
  } else {
    const sh = `setsid ${cmd.join(' ')} </dev/null >/dev/null 2>&1 & echo $!`;
    pid = Number(spawnSync('sh', ['-c', sh], { encoding: 'utf8' }).stdout.trim());
  }
  leftovers.push(pid);
  waitFor('the queues made', () => fs.existsSync(path.join(dir, 'ready')), 10_000);
  return { dir, name, pid };
}

function result(dir: string) {
  fs.writeFileSync(path.join(dir, 'go'), '');
  waitFor('the result', () => fs.existsSync(path.join(dir, 'result')), 10_000);
  return JSON.parse(fs.readFileSync(path.join(dir, 'result'), 'utf8'));
}

/** Remove host queue `name` (mq_unlink through python). */
function unlinkHostQueue(name: string): void {
  spawnSync('python3', ['-c', `import ctypes; ctypes.CDLL(None).mq_unlink(b"${name}")`]);
}

describe('POSIX message queues', () => {
  it('of a container come back with their limits, mode, flags and messages in order; an unlinked one stays unlinked', () => {
    const { dir, pid } = start(true);
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the container gone', () => !isAlive(pid));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    expect(result(dir)).toEqual(EXPECTED);
  });

  it('of a container keep every message, in order, when it is left running', () => {
    const { dir, pid } = start(true);
    ckptOk(['checkpoint', String(pid), '-o', tmpImage()]);
    expect(result(dir)).toEqual(EXPECTED);
  });

  it("of the host's namespace outlive the process: the restored one finds the messages once", () => {
    const { dir, name, pid } = start(false);
    try {
      const img = tmpImage();
      ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
      waitFor('the process gone', () => !isAlive(pid));
      expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
      expect(result(dir)).toEqual(EXPECTED);
    } finally {
      unlinkHostQueue(name);
    }
  });

  it("of the host's namespace gone by the restart are made again, empty, with a warning", () => {
    const { dir, name, pid } = start(false);
    try {
      const img = tmpImage();
      ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
      waitFor('the process gone', () => !isAlive(pid));
      unlinkHostQueue(name);
      const r = ckpt(['restart', img, '-d']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toContain(
        `message queue ${name} was gone: made again, empty (its messages stayed where it was checkpointed)`,
      );
      expect(result(dir)).toEqual({ ...EXPECTED, attrs: [5, 64, 0], messages: [] });
    } finally {
      unlinkHostQueue(name);
    }
  });

  it('with a notification registered are refused, and the program runs on', () => {
    const { pid } = start(true, ['notify']);
    const r = ckpt(['checkpoint', String(pid), '-o', tmpImage(), '--kill']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(
        `pid ${pid} fd \\d+: message queue /ckpt-mq-\\S+-ghost(?: \\(deleted\\))? has a notification registered \\(mq_notify, by pid ${pid}\\)`,
      ),
    );
    expect(isAlive(pid)).toBe(true);
  });
});
