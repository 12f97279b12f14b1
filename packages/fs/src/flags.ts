/** Open-flag bits and device-number helpers (x86-64 and s390x agree on these). */

export const O_ACCMODE = 0o3;
export const O_RDONLY = 0;
export const O_NONBLOCK = 0o4000;
const O_APPEND = 0o2000;
const O_DSYNC = 0o10000;
const O_DIRECT = 0o40000;
const O_LARGEFILE = 0o100000;
const O_DIRECTORY = 0o200000;
const O_NOATIME = 0o1000000;
const O_CLOEXEC = 0o2000000;
const O_SYNC = 0o4010000;
const O_PATH = 0o10000000;

/** fcntl commands and the fd flag. */
export const F_DUPFD_CLOEXEC = 1030;
export const F_SETFD = 2;
export const F_SETFL = 4;
export const FD_CLOEXEC = 1;
export { O_CLOEXEC };

/**
 * The open-file flags a reopen may pass back to open(2). The kernel keeps
 * them in f_flags, which fdinfo shows; everything else there (O_CLOEXEC,
 * which belongs to the fd, internal FMODE bits) must not be replayed, and
 * O_CREAT/O_TRUNC/O_EXCL never appear because the kernel drops them at open.
 */
const REOPEN_FLAGS =
  O_ACCMODE |
  O_NONBLOCK |
  O_APPEND |
  O_DSYNC |
  O_SYNC |
  O_DIRECT |
  O_LARGEFILE |
  O_DIRECTORY |
  O_NOATIME |
  O_PATH;

/** The flags of {@link reopenFlags} that fcntl(F_SETFL) can change on an open file. */
export const SETFL_FLAGS = O_APPEND | O_NONBLOCK | O_DIRECT | O_NOATIME;
export const O_RDWR = 2;
/** Set on every regular file a 64-bit kernel opens, whichever way. */
export { O_LARGEFILE };

/** The part of fdinfo `flags` that describes the open file and can be reopened with. */
export function reopenFlags(flags: number): number {
  return flags & REOPEN_FLAGS;
}

/** Major number of a Linux dev_t as stat(2) returns it (glibc's encoding). */
export function major(dev: number): number {
  const d = BigInt(dev);
  return Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn));
}

/** Minor number of a Linux dev_t. */
export function minor(dev: number): number {
  const d = BigInt(dev);
  return Number((d & 0xffn) | ((d >> 12n) & ~0xffn));
}
