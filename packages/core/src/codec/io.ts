/**
 * Synchronous byte sources and sinks for the image stream. ckpt's engine is
 * synchronous (ptrace must be driven from one thread, step by step), so the
 * image is read and written with blocking calls on plain file descriptors:
 * regular files, pipes and terminals alike, never seeking.
 */
import * as fs from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { CkptError } from '../errors.js';
import { errno, libc, sysError } from '../kernel/libc.js';

/** Where image bytes come from. */
export interface ByteSource {
  /** Read up to `len` bytes into `buf` at `off`; 0 means end of stream. */
  read(buf: Buffer, off: number, len: number): number;
  /** Total stream size when known in advance (regular files), else undefined. */
  readonly size?: number;
  /**
   * Read into `buf` from byte `position`, without moving the stream; only
   * sources of known size (files) have it. Returns the bytes read.
   */
  readAt?(buf: Buffer, position: number): number;
  close(): void;
}

/** Where image bytes go. */
export interface ByteSink {
  /** Write all of `buf`. */
  write(buf: Buffer): void;
  /**
   * The image is complete (a checkpoint calls it once it succeeded): a
   * sink that stands in for a file may now let it replace what was there.
   */
  commit?(): void;
  close(): void;
}

// A non-blocking descriptor (a shared stdin, say) answers EAGAIN; wait a
// little and retry instead of failing or spinning.
const pause = new Int32Array(new SharedArrayBuffer(4));
function waitBriefly(): void {
  Atomics.wait(pause, 0, 0, 2);
}

function isErrno(e: unknown, code: string): boolean {
  return (e as NodeJS.ErrnoException)?.code === code;
}

/** Read-ahead of {@link FdSource}. */
const READ_AHEAD = 256 * 1024;

/** A source over a file descriptor. */
export class FdSource implements ByteSource {
  readonly size?: number;
  constructor(
    readonly fd: number,
    readonly name = `fd ${fd}`,
    private readonly ownsFd = false,
  ) {
    const st = fs.fstatSync(fd);
    if (st.isFile()) this.size = st.size;
  }

  /** Open a path (or `-` for standard input). */
  static open(path: string): FdSource {
    if (path === '-') return new FdSource(0, 'standard input');
    try {
      return new FdSource(fs.openSync(path, 'r'), path, true);
    } catch (e) {
      throw new CkptError('ENOENT', `cannot open image '${path}': ${(e as Error).message}`, {
        path,
      });
    }
  }

  /**
   * Small reads (record headers, small records: thousands per image) are
   * served from a read-ahead buffer, one system call per 256 KiB; large
   * ones go straight to the caller's buffer. A refill takes what is there
   * (a pipe may hold less), so it never waits longer than the read itself.
   */
  private ahead: Buffer | undefined;
  private aheadPos = 0;
  private aheadEnd = 0;

  read(buf: Buffer, off: number, len: number): number {
    if (this.aheadPos < this.aheadEnd) {
      const n = Math.min(len, this.aheadEnd - this.aheadPos);
      this.ahead!.copy(buf, off, this.aheadPos, this.aheadPos + n);
      this.aheadPos += n;
      return n;
    }
    if (len >= READ_AHEAD / 4) return this.readFd(buf, off, len);
    this.ahead ??= Buffer.allocUnsafe(READ_AHEAD);
    this.aheadPos = 0;
    this.aheadEnd = this.readFd(this.ahead, 0, READ_AHEAD);
    if (this.aheadEnd === 0) return 0;
    return this.read(buf, off, len);
  }

  readAt(buf: Buffer, position: number): number {
    if (this.size === undefined)
      throw new CkptError('EINVAL', `${this.name} cannot be read at an offset`);
    try {
      return fs.readSync(this.fd, buf, 0, buf.length, position);
    } catch (e) {
      throw new CkptError('EIO', `reading ${this.name}: ${(e as Error).message}`);
    }
  }

  private readFd(buf: Buffer, off: number, len: number): number {
    for (;;) {
      try {
        return fs.readSync(this.fd, buf, off, len, null);
      } catch (e) {
        if (isErrno(e, 'EAGAIN')) {
          waitBriefly();
          continue;
        }
        if (isErrno(e, 'EOF')) return 0;
        throw new CkptError('EIO', `reading ${this.name}: ${(e as Error).message}`);
      }
    }
  }

  close(): void {
    if (this.ownsFd) fs.closeSync(this.fd);
  }
}

/** A source over an in-memory buffer (tests, small images). */
export class BufferSource implements ByteSource {
  private pos = 0;
  constructor(private readonly data: Buffer) {}
  get size(): number {
    return this.data.length;
  }
  read(buf: Buffer, off: number, len: number): number {
    const n = Math.min(len, this.data.length - this.pos);
    this.data.copy(buf, off, this.pos, this.pos + n);
    this.pos += n;
    return n;
  }
  readAt(buf: Buffer, position: number): number {
    return this.data.copy(buf, 0, position, Math.min(this.data.length, position + buf.length));
  }
  close(): void {}
}

/** O_TMPFILE (with O_DIRECTORY): an unnamed file in a directory, gone if never linked. */
const O_TMPFILE = 0o20200000;
const AT_FDCWD = -100;
const AT_SYMLINK_FOLLOW = 0x400;

/**
 * A sink over a file descriptor. {@link FdSink.open} of a path writes to a
 * file of its own and puts it at the path only when the image is complete
 * (see there).
 */
export class FdSink implements ByteSink {
  /** Bytes written so far. */
  private written = 0;
  /** For a path: where the image goes, and how the file being written gets there. */
  private target?: { path: string; named?: string; hadFile: boolean };
  private committed = false;
  /** A write failed (a full disk): the image is not kept. */
  private writeFailed = false;
  /**
   * The image the committed one replaced, held open until close: freeing
   * its page cache takes a while (0.35 s per GiB on the development VM),
   * which should not count against the frozen tree.
   */
  private replaced?: number;
  /** After close: the path kept the file it had (the checkpoint failed). */
  keptPrevious = false;

  constructor(
    readonly fd: number,
    readonly name = `fd ${fd}`,
    private readonly ownsFd = false,
  ) {}

  /**
   * Write an image to `path` (or `-` for standard output). A regular file
   * (or none yet) is replaced only by a complete image: the image is
   * written to an unnamed file in the same directory (O_TMPFILE; else a
   * hidden temporary name), which {@link commit} puts at the path with a
   * rename. A checkpoint that fails or is killed leaves an image that was
   * there as it was; where there was none, a failed image still appears,
   * ending with its error record, so `ckpt info` says why (unless writing
   * it failed: a full disk gets its space back). Anything else
   * at the path (a FIFO, a device) is written directly.
   */
  static open(path: string): FdSink {
    if (path === '-') return new FdSink(1, 'standard output');
    // Loaded before the first stat: Node 20 resolves the next module path
    // wrongly after statSync of a FIFO, and koffi loads on first use.
    libc();
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(path, { throwIfNoEntry: false });
      // Through a symbolic link: its target is what gets replaced, unless
      // it is a file some process has open (/dev/stdout, /proc/self/fd/N).
      const link = st && fs.lstatSync(path).isSymbolicLink();
      const target = link ? fs.realpathSync(path) : path;
      const openFile =
        /^\/(proc|dev)\//.test(path) || (link && /^\/proc\//.test(fs.readlinkSync(path)));
      if (st && (!st.isFile() || openFile)) {
        return new FdSink(fs.openSync(path, fs.constants.O_WRONLY), path, true);
      }
      const dir = dirname(target);
      let sink: FdSink;
      let named: string | undefined;
      try {
        sink = new FdSink(fs.openSync(dir, O_TMPFILE | fs.constants.O_WRONLY, 0o600), path, true);
      } catch (e) {
        // A filesystem without O_TMPFILE: a hidden name beside the image.
        if (!isErrno(e, 'EOPNOTSUPP') && !isErrno(e, 'EISDIR') && !isErrno(e, 'EINVAL')) throw e;
        named = join(dir, `.${basename(target)}.ckpt-${process.pid}.partial`);
        const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL;
        sink = new FdSink(fs.openSync(named, flags, 0o600), path, true);
      }
      sink.target = { path: target, named, hadFile: st !== undefined };
      return sink;
    } catch (e) {
      throw new CkptError('EIO', `cannot create image '${path}': ${(e as Error).message}`, {
        path,
      });
    }
  }

  write(buf: Buffer): void {
    let off = 0;
    while (off < buf.length) {
      try {
        const n = fs.writeSync(this.fd, buf, off, buf.length - off);
        off += n;
        this.written += n;
      } catch (e) {
        if (isErrno(e, 'EAGAIN')) {
          waitBriefly();
          continue;
        }
        this.writeFailed = true;
        throw new CkptError('EIO', `writing ${this.name}: ${(e as Error).message}`);
      }
    }
  }

  /** The image is complete: put it at its path, replacing what was there. */
  commit(): void {
    if (!this.target || this.committed) return;
    this.publish();
    this.committed = true;
  }

  close(): void {
    if (!this.ownsFd) return;
    try {
      const t = this.target;
      if (t && !this.committed) {
        // A failed image shows why only where it replaces nothing, and
        // only if it could be written (not a full disk: its error record
        // could not follow, and the space is better given back).
        if (t.hadFile) this.keptPrevious = true;
        else if (!this.writeFailed) this.publish();
      }
    } finally {
      fs.closeSync(this.fd);
      if (this.target?.named && fs.existsSync(this.target.named)) fs.rmSync(this.target.named);
      if (this.replaced !== undefined) fs.closeSync(this.replaced);
    }
  }

  private publish(): void {
    const t = this.target!;
    const dir = dirname(t.path);
    let from = t.named;
    if (!from) {
      // Give the unnamed file a hidden name, then rename it over the path.
      from = join(dir, `.${basename(t.path)}.ckpt-${process.pid}.new`);
      if (fs.existsSync(from)) fs.rmSync(from);
      if (
        libc().linkat(AT_FDCWD, `/proc/self/fd/${this.fd}`, AT_FDCWD, from, AT_SYMLINK_FOLLOW) < 0
      ) {
        throw sysError('linkat', errno(), `putting the image at ${t.path}`);
      }
    }
    try {
      if (t.hadFile && this.replaced === undefined) {
        try {
          this.replaced = fs.openSync(t.path, fs.constants.O_RDONLY);
        } catch {
          // Gone or unreadable meanwhile: freed at the rename then.
        }
      }
      fs.renameSync(from, t.path);
    } catch (e) {
      fs.rmSync(from, { force: true });
      throw new CkptError('EIO', `putting the image at ${t.path}: ${(e as Error).message}`, {
        path: t.path,
      });
    }
  }
}

/** A sink that collects everything in memory. */
export class BufferSink implements ByteSink {
  private readonly chunks: Buffer[] = [];
  write(buf: Buffer): void {
    this.chunks.push(Buffer.from(buf));
  }
  /** Everything written so far. */
  contents(): Buffer {
    return Buffer.concat(this.chunks);
  }
  close(): void {}
}
