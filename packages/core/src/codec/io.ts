/**
 * Synchronous byte sources and sinks for the image stream. ckpt's engine is
 * synchronous (ptrace must be driven from one thread, step by step), so the
 * image is read and written with blocking calls on plain file descriptors:
 * regular files, pipes and terminals alike, never seeking.
 */
import * as fs from 'node:fs';
import { CkptError } from '../errors.js';

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

/** A sink over a file descriptor. */
export class FdSink implements ByteSink {
  /** Bytes written so far. */
  private written = 0;

  constructor(
    readonly fd: number,
    readonly name = `fd ${fd}`,
    private readonly ownsFd = false,
  ) {}

  /**
   * Create or overwrite a path (or `-` for standard output). An existing
   * file is written over in place and cut to length on close, rather than
   * truncated first: its page-cache pages are reused instead of freed and
   * allocated again, which matters for gigabyte images written repeatedly.
   */
  static open(path: string): FdSink {
    if (path === '-') return new FdSink(1, 'standard output');
    try {
      const flags = fs.constants.O_WRONLY | fs.constants.O_CREAT;
      return new FdSink(fs.openSync(path, flags, 0o600), path, true);
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
        throw new CkptError('EIO', `writing ${this.name}: ${(e as Error).message}`);
      }
    }
  }

  close(): void {
    if (!this.ownsFd) return;
    try {
      // Drop whatever an older, longer image left beyond this one.
      if (fs.fstatSync(this.fd).isFile()) fs.ftruncateSync(this.fd, this.written);
    } finally {
      fs.closeSync(this.fd);
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
