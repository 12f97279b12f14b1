/**
 * Shared plumbing of the /proc readers: path building, synchronous reads,
 * and turning errno failures into {@link CkptError}s that say whether the
 * process went away or only one of its files did.
 */
import { closeSync, existsSync, openSync, readdirSync, readlinkSync, readSync } from 'node:fs';
import { constants } from 'node:os';
import { CkptError } from '../errors.js';

function checkId(what: string, id: number): void {
  if (!Number.isSafeInteger(id) || id <= 0) {
    throw new CkptError('EINVAL', `${what} must be a positive integer, got ${id}`);
  }
}

/** `/proc/PID/NAME`, or `/proc/PID/task/TID/NAME` when a thread is given. */
export function procPath(pid: number, name: string, tid?: number): string {
  checkId('pid', pid);
  if (tid === undefined) return `/proc/${pid}/${name}`;
  checkId('tid', tid);
  return `/proc/${pid}/task/${tid}/${name}`;
}

/**
 * Maps a failed /proc access to a CkptError. ENOENT and ESRCH are ambiguous:
 * they mean "the process exited" only when /proc/PID itself is gone; a
 * zombie keeps /proc/PID but loses its fds, namespaces and address space.
 */
export function procError(err: unknown, path: string, pid: number, tid?: number): CkptError {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const errno = (constants.errno as Record<string, number>)[code];
  const ctx = { pid, path, ...(errno === undefined ? {} : { errno }) };
  const opts = { cause: err };
  if (code === 'ENOENT' || code === 'ESRCH') {
    if (!existsSync(`/proc/${pid}`)) {
      return new CkptError(
        'ESRCH',
        `process ${pid} does not exist (it may have exited)`,
        ctx,
        opts,
      );
    }
    if (tid !== undefined && !existsSync(`/proc/${pid}/task/${tid}`)) {
      return new CkptError(
        'ESRCH',
        `thread ${tid} of process ${pid} does not exist (it may have exited)`,
        ctx,
        opts,
      );
    }
    if (code === 'ESRCH') {
      return new CkptError(
        'ESRCH',
        `cannot read ${path}: process ${pid} is exiting or a zombie`,
        ctx,
        opts,
      );
    }
    return new CkptError(
      'ENOENT',
      `${path} does not exist (process ${pid} may be a zombie or a kernel thread, or the entry was closed)`,
      ctx,
      opts,
    );
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new CkptError('EPERM', `not permitted to read ${path}`, ctx, opts);
  }
  return new CkptError('ESYS', `reading ${path} failed: ${code || String(err)}`, ctx, opts);
}

/**
 * Where /proc files are read, reused (grown for a bigger file). Node's
 * readFileSync sizes a /proc file (st_size 0) with fresh 64 KiB buffers and
 * costs ~100 µs a file more than reading into this one, which adds up over
 * the many small reads of a tree.
 */
let procBuf = Buffer.allocUnsafe(64 * 1024);

/** Read `path` whole into `procBuf`; returns the length. */
function readWhole(path: string, pid: number, tid?: number): number {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw procError(e, path, pid, tid);
  }
  try {
    let total = 0;
    for (;;) {
      if (total === procBuf.length) {
        const bigger = Buffer.allocUnsafe(procBuf.length * 2);
        procBuf.copy(bigger, 0, 0, total);
        procBuf = bigger;
      }
      const n = readSync(fd, procBuf, total, procBuf.length - total, null);
      if (n === 0) return total;
      total += n;
    }
  } catch (e) {
    throw procError(e, path, pid, tid);
  } finally {
    closeSync(fd);
  }
}

/** Reads a /proc file of a process (or thread) as bytes. */
export function readProcBytes(pid: number, name: string, tid?: number): Buffer {
  const n = readWhole(procPath(pid, name, tid), pid, tid);
  return Buffer.from(procBuf.subarray(0, n));
}

/** Reads a /proc file of a process (or thread) as UTF-8 text. */
export function readProcText(pid: number, name: string, tid?: number): string {
  const n = readWhole(procPath(pid, name, tid), pid, tid);
  return procBuf.toString('utf8', 0, n);
}

/** Reads a /proc symlink (exe, cwd, fd/N, ns/net, ...). */
export function readProcLink(pid: number, name: string, tid?: number): string {
  const path = procPath(pid, name, tid);
  try {
    return readlinkSync(path);
  } catch (e) {
    throw procError(e, path, pid, tid);
  }
}

/** Lists a /proc directory of a process (fd, task, ns, ...). */
export function readProcDir(pid: number, name: string, tid?: number): string[] {
  const path = procPath(pid, name, tid);
  try {
    return readdirSync(path);
  } catch (e) {
    throw procError(e, path, pid, tid);
  }
}

/** The EINVAL thrown when a /proc file does not have the expected shape. */
export function malformed(file: string, why: string): CkptError {
  return new CkptError('EINVAL', `cannot parse ${file}: ${why}`, { path: file });
}

/** Parses a (possibly negative) decimal integer that must fit a JS number. */
export function parseDec(text: string, file: string, field: string): number {
  if (!/^-?\d+$/.test(text)) throw malformed(file, `${field} is not a decimal integer: '${text}'`);
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw malformed(file, `${field} is out of range: ${text}`);
  return n;
}

/** Parses a hexadecimal field (no 0x prefix) as bigint. */
export function parseHexBig(text: string, file: string, field: string): bigint {
  if (!/^[0-9a-fA-F]+$/.test(text)) throw malformed(file, `${field} is not hexadecimal: '${text}'`);
  return BigInt(`0x${text}`);
}

/** Parses an unsigned decimal field as bigint (addresses, 64-bit limits). */
export function parseDecBig(text: string, file: string, field: string): bigint {
  if (!/^\d+$/.test(text)) throw malformed(file, `${field} is not a decimal integer: '${text}'`);
  return BigInt(text);
}

/** Parses an octal field (umask, open flags). */
export function parseOct(text: string, file: string, field: string): number {
  if (!/^[0-7]+$/.test(text)) throw malformed(file, `${field} is not octal: '${text}'`);
  return Number.parseInt(text, 8);
}
