/**
 * Typed errors. Every failure ckpt reports is a {@link CkptError}: an
 * errno-like code, a sentence a person can act on, and the context that
 * locates the problem (pid, fd, path, record type, image offset).
 */

/** errno-like error codes used across ckpt. */
export type CkptErrorCode =
  | 'EINVAL' // invalid argument or malformed value
  | 'EIO' // I/O failure on the image stream
  | 'EBADMAGIC' // not a ckpt image
  | 'EVERSION' // unsupported image format version
  | 'ETRUNC' // image ends inside a record
  | 'EBADREC' // malformed record (length, alignment, contents)
  | 'EUNEXPECTED' // a record of another type was required here
  | 'EBADOBJREF' // objref never defined, or of the wrong type
  | 'ECHECKSUM' // tail checksum or record count mismatch
  | 'ETRAILING' // data after the tail record
  | 'EIMAGEERR' // the image ends with an error record from a failed checkpoint
  | 'EEXIST' // duplicate registration or object
  | 'ENOENT' // missing file, process or registration
  | 'ESRCH' // no such process
  | 'EPERM' // not permitted
  | 'EBUSY' // resource in use (pid taken, task traced by someone else)
  | 'ENOTSUP' // unsupported object, file type or feature
  | 'ENOSYS' // kernel interface missing
  | 'EFAULT' // memory access failed
  | 'ELEAK' // object shared with processes outside the checkpointed tree
  | 'EAGAIN' // try again
  | 'EINTR' // interrupted
  | 'ESTALE' // a file the image depends on has changed since the checkpoint
  | 'ESYS'; // a system call failed (see `errno`)

/** Where an error happened. All fields optional; set what is known. */
export interface CkptErrorContext {
  pid?: number;
  fd?: number;
  path?: string;
  /** Numeric record type, when the error concerns an image record. */
  recordType?: number;
  /** Byte offset in the image stream where the offending record starts. */
  offset?: number;
  /** Address range, e.g. of a VMA. */
  address?: bigint;
  /** System call or operation name. */
  syscall?: string;
  /** Raw errno from the kernel, when a system call failed. */
  errno?: number;
}

/**
 * The one error type ckpt throws on purpose. `message` is the whole human
 * sentence; {@link CkptError.oneLine} adds the location context.
 */
export class CkptError extends Error {
  override readonly name = 'CkptError';
  readonly code: CkptErrorCode;
  readonly context: CkptErrorContext;

  constructor(
    code: CkptErrorCode,
    message: string,
    context: CkptErrorContext = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = code;
    this.context = context;
  }

  /** One line for the terminal: the message plus the known location. */
  oneLine(): string {
    const where: string[] = [];
    const c = this.context;
    // "pid 42", "process 42", "thread 42": the message names it already.
    if (c.pid !== undefined && !new RegExp(`\\b${c.pid}\\b`).test(this.message)) {
      where.push(`pid ${c.pid}`);
    }
    if (c.fd !== undefined && !this.message.includes(`fd ${c.fd}`)) where.push(`fd ${c.fd}`);
    if (c.offset !== undefined && !this.message.includes('offset'))
      where.push(`offset ${c.offset}`);
    if (c.recordType !== undefined && !this.message.includes('record')) {
      where.push(`record type ${c.recordType}`);
    }
    return where.length ? `${this.message} (${where.join(', ')})` : this.message;
  }

  /** A plain object for `--json` output. */
  toJSON(): Record<string, unknown> {
    const ctx: Record<string, unknown> = { ...this.context };
    if (typeof ctx.address === 'bigint') ctx.address = `0x${ctx.address.toString(16)}`;
    return { code: this.code, message: this.message, ...ctx };
  }
}

/**
 * `e` as a CkptError: a CkptError gets `pid` as context if it has none;
 * anything else (a bug) becomes an EINVAL "internal error" naming `where`.
 */
export function asCkptError(e: unknown, where: string, pid?: number): CkptError {
  if (e instanceof CkptError) {
    if (e.context.pid === undefined && pid !== undefined) e.context.pid = pid;
    return e;
  }
  // A failed system call of Node's own (fs): the machine's state (a full
  // disk, a missing directory), not ckpt's fault, and its path says where.
  const sys = e as NodeJS.ErrnoException | undefined;
  if (sys && typeof sys.code === 'string' && typeof sys.errno === 'number' && sys.syscall) {
    const path = sys.path;
    return new CkptError(
      'ESYS',
      `${where}${pid === undefined ? '' : ` for pid ${pid}`}: ${sys.syscall}${path ? ` ${path}` : ''} failed: ${sys.code} (${errnoMeaning(sys.message)})`,
      {
        ...(pid === undefined ? {} : { pid }),
        ...(path ? { path } : {}),
        syscall: sys.syscall,
        errno: -sys.errno,
      },
      { cause: e },
    );
  }
  return new CkptError(
    'EINVAL',
    `internal error in ${where}${pid === undefined ? '' : ` for pid ${pid}`}: ${(e as Error)?.message ?? String(e)}`,
    pid === undefined ? {} : { pid },
    { cause: e },
  );
}

/** "no space left on device" from Node's "ENOSPC: no space left on device, write". */
function errnoMeaning(message: string): string {
  const m = /^[A-Z0-9]+: ([^,]+)/.exec(message);
  return m ? m[1]! : message;
}

/** True when `e` is a {@link CkptError} (optionally with the given code). */
export function isCkptError(e: unknown, code?: CkptErrorCode): e is CkptError {
  return e instanceof CkptError && (code === undefined || e.code === code);
}
