/**
 * The libc bindings of the kernel interface, loaded once on first use.
 *
 * Every function here is a thin koffi binding: it returns what libc returns
 * (-1 with errno set on failure). Callers turn failures into `CkptError`s with
 * {@link sysError}. Pointer arguments are Node `Buffer`s (koffi passes their
 * memory directly, without copying) or raw addresses as `bigint`.
 *
 * All calls are synchronous and run on the calling (main) thread: ptrace
 * requires that every request for a tracee comes from the thread that
 * attached to it.
 */
import { createRequire } from 'node:module';
import { getSystemErrorMap } from 'node:util';
import type Koffi from 'koffi';
import { CkptError, type CkptErrorCode } from '../errors.js';

// koffi (a native addon) is loaded on first use, not at import: commands
// that never touch the kernel interface (`ckpt info`) start faster.
let koffiModule: typeof Koffi | undefined;
function koffi(): typeof Koffi {
  koffiModule ??= createRequire(import.meta.url)('koffi') as typeof Koffi;
  return koffiModule;
}

/** A value passed to a C `long`/`uintptr_t` parameter. */
export type CLong = number | bigint;

// `syscall(2)` numbers of the host for the calls glibc does not wrap.
const HOST_SYSCALLS: Record<
  string,
  {
    kcmp: number;
    rtTgsigqueueinfo: number;
    userfaultfd: number;
    schedSetattr: number;
    schedGetattr: number;
    ioprioSet: number;
    ioprioGet: number;
  }
> = {
  x64: {
    kcmp: 312,
    rtTgsigqueueinfo: 297,
    userfaultfd: 323,
    schedSetattr: 314,
    schedGetattr: 315,
    ioprioSet: 251,
    ioprioGet: 252,
  },
  arm64: {
    kcmp: 272,
    rtTgsigqueueinfo: 240,
    userfaultfd: 282,
    schedSetattr: 274,
    schedGetattr: 275,
    ioprioSet: 30,
    ioprioGet: 31,
  },
  s390x: {
    kcmp: 343,
    rtTgsigqueueinfo: 330,
    userfaultfd: 355,
    schedSetattr: 345,
    schedGetattr: 346,
    ioprioSet: 282,
    ioprioGet: 283,
  },
};

/**
 * An object whose properties are made by their thunks on first access:
 * koffi parses a prototype per binding (~0.3 ms each before the JIT warms
 * up), and a command uses fewer than half of them.
 */
function lazyObject<T extends Record<string, unknown>>(thunks: { [K in keyof T]: () => T[K] }): T {
  const out = {} as T;
  for (const key of Object.keys(thunks) as (keyof T & string)[]) {
    Object.defineProperty(out, key, {
      configurable: true,
      enumerable: true,
      get() {
        const value = thunks[key]();
        Object.defineProperty(out, key, { value, enumerable: true });
        return value;
      },
    });
  }
  return out;
}

function bind() {
  const lib = koffi().load('libc.so.6');
  const host = HOST_SYSCALLS[process.arch];
  return lazyObject({
    // ptrace is variadic in C; on the supported ABIs a fixed four-argument
    // prototype passes the arguments in the same registers. Two prototypes:
    // `data` as an integer, or as a pointer to our memory.
    ptrace: () => lib.func('long ptrace(int request, int pid, uintptr_t addr, uintptr_t data)'),
    ptraceBuf: () => lib.func('long ptrace(int request, int pid, uintptr_t addr, void *data)'),
    waitpid: () => lib.func('int waitpid(int pid, void *status, int options)'),
    kill: () => lib.func('int kill(int pid, int sig)'),
    pipe2: () => lib.func('int pipe2(_Out_ int *fds, int flags)'),
    tee: () => lib.func('long tee(int fdIn, int fdOut, ulong len, uint flags)'),
    // fcntl is variadic; an int third argument goes in the same register.
    fcntl: () => lib.func('int fcntl(int fd, int cmd, int arg)'),
    // The same, its third argument a pointer to our memory (F_GETOWN_EX).
    fcntlBuf: () => lib.func('int fcntl(int fd, int cmd, void *arg)'),
    tgkill: () => lib.func('int tgkill(int tgid, int tid, int sig)'),
    processVmReadv: () =>
      lib.func(
        'long process_vm_readv(int pid, void *lvec, ulong liovcnt, void *rvec, ulong riovcnt, ulong flags)',
      ),
    processVmWritev: () =>
      lib.func(
        'long process_vm_writev(int pid, void *lvec, ulong liovcnt, void *rvec, ulong riovcnt, ulong flags)',
      ),
    pidfdOpen: () => lib.func('int pidfd_open(int pid, uint flags)'),
    pidfdGetfd: () => lib.func('int pidfd_getfd(int pidfd, int targetfd, uint flags)'),
    prctl: () => lib.func('int prctl(int option, ulong a2, ulong a3, ulong a4, ulong a5)'),
    setns: () => lib.func('int setns(int fd, int nstype)'),
    unshare: () => lib.func('int unshare(int flags)'),
    kcmp: () =>
      host
        ? lib.func(`long syscall(long nr, int pid1, int pid2, int type, ulong idx1, ulong idx2)`)
        : undefined,
    kcmpNr: () => host?.kcmp ?? -1,
    syscall1: () => lib.func('long syscall(long nr, long a1)'),
    // The new mount API (numbers shared by every architecture): fsopen,
    // fsconfig and fsmount.
    fsopen: () => lib.func('long syscall(long nr, str fsname, uint flags)'),
    fsconfig: () =>
      lib.func('long syscall(long nr, int fd, uint cmd, void *key, void *value, int aux)'),
    fsmount: () => lib.func('long syscall(long nr, int fd, uint flags, uint attrs)'),
    userfaultfdNr: () => host?.userfaultfd ?? -1,
    rtTgsigqueueinfo: () =>
      lib.func('long syscall(long nr, int tgid, int tid, int sig, void *info)'),
    rtTgsigqueueinfoNr: () => host?.rtTgsigqueueinfo ?? -1,
    // sched_getattr(pid, attr, size, flags) and sched_setattr(pid, attr, flags).
    schedAttr: () => lib.func('long syscall(long nr, int pid, void *attr, uint a3, uint a4)'),
    schedSetattrNr: () => host?.schedSetattr ?? -1,
    schedGetattrNr: () => host?.schedGetattr ?? -1,
    // ioprio_get(which, who) and ioprio_set(which, who, ioprio).
    ioprio: () => lib.func('long syscall(long nr, int which, int who, int ioprio)'),
    ioprioSetNr: () => host?.ioprioSet ?? -1,
    ioprioGetNr: () => host?.ioprioGet ?? -1,
    schedGetaffinity: () => lib.func('int sched_getaffinity(int pid, ulong size, void *mask)'),
    schedSetaffinity: () => lib.func('int sched_setaffinity(int pid, ulong size, void *mask)'),
    close: () => lib.func('int close(int fd)'),
    pread: () => lib.func('long pread(int fd, void *buf, ulong count, int64_t offset)'),
    pwrite: () => lib.func('long pwrite(int fd, void *buf, ulong count, int64_t offset)'),
    lseek: () => lib.func('int64_t lseek(int fd, int64_t offset, int whence)'),
    // posix_spawn and its helper objects (opaque buffers we allocate).
    posixSpawn: () =>
      lib.func(
        'int posix_spawn(_Out_ int *pid, str path, void *actions, void *attr, str *argv, str *envp)',
      ),
    posixSpawnp: () =>
      lib.func(
        'int posix_spawnp(_Out_ int *pid, str file, void *actions, void *attr, str *argv, str *envp)',
      ),
    fileActionsInit: () => lib.func('int posix_spawn_file_actions_init(void *actions)'),
    fileActionsDestroy: () => lib.func('int posix_spawn_file_actions_destroy(void *actions)'),
    fileActionsAddOpen: () =>
      lib.func(
        'int posix_spawn_file_actions_addopen(void *actions, int fd, str path, int oflag, uint mode)',
      ),
    fileActionsAddDup2: () =>
      lib.func('int posix_spawn_file_actions_adddup2(void *actions, int fd, int newfd)'),
    fileActionsAddCloseFrom: () =>
      lib.func('int posix_spawn_file_actions_addclosefrom_np(void *actions, int from)'),
    attrInit: () => lib.func('int posix_spawnattr_init(void *attr)'),
    attrDestroy: () => lib.func('int posix_spawnattr_destroy(void *attr)'),
    attrSetFlags: () => lib.func('int posix_spawnattr_setflags(void *attr, short flags)'),
    attrSetSigMask: () => lib.func('int posix_spawnattr_setsigmask(void *attr, void *sigset)'),
    attrSetSigDefault: () =>
      lib.func('int posix_spawnattr_setsigdefault(void *attr, void *sigset)'),
    socket: () => lib.func('int socket(int domain, int type, int protocol)'),
    shutdown: () => lib.func('int shutdown(int fd, int how)'),
    send: () => lib.func('long send(int fd, void *buf, ulong len, int flags)'),
    recv: () => lib.func('long recv(int fd, void *buf, ulong len, int flags)'),
    recvmsg: () => lib.func('long recvmsg(int fd, void *msg, int flags)'),
    getsockname: () => lib.func('int getsockname(int fd, void *addr, void *len)'),
    getpeername: () => lib.func('int getpeername(int fd, void *addr, void *len)'),
    getsockopt: () =>
      lib.func('int getsockopt(int fd, int level, int name, void *value, void *len)'),
    setsockopt: () =>
      lib.func('int setsockopt(int fd, int level, int name, void *value, uint len)'),
    bind: () => lib.func('int bind(int fd, void *addr, uint len)'),
    linkat: () =>
      lib.func('int linkat(int olddirfd, str oldpath, int newdirfd, str newpath, int flags)'),
    connect: () => lib.func('int connect(int fd, void *addr, uint len)'),
    memfdCreate: () => lib.func('int memfd_create(str name, uint flags)'),
    mknod: () => lib.func('int mknod(str path, uint mode, uint64_t dev)'),
    getdents64: () => lib.func('long getdents64(int fd, void *buf, ulong count)'),
    utimensat: () => lib.func('int utimensat(int dirfd, str path, void *times, int flags)'),
    ioctlBuf: () => lib.func('int ioctl(int fd, ulong request, void *arg)'),
    openByHandleAt: () => lib.func('int open_by_handle_at(int mountFd, void *handle, int flags)'),
    // SysV IPC. semctl is variadic; its union argument (a pointer for
    // IPC_STAT, IPC_SET, GETALL, SETALL) goes in the same register.
    shmget: () => lib.func('int shmget(int key, ulong size, int flags)'),
    shmat: () => lib.func('uintptr_t shmat(int id, uintptr_t addr, int flags)'),
    shmdt: () => lib.func('int shmdt(uintptr_t addr)'),
    shmctl: () => lib.func('int shmctl(int id, int cmd, void *buf)'),
    msgget: () => lib.func('int msgget(int key, int flags)'),
    msgsnd: () => lib.func('int msgsnd(int id, void *msg, ulong size, int flags)'),
    msgrcv: () => lib.func('long msgrcv(int id, void *msg, ulong size, long type, int flags)'),
    msgctl: () => lib.func('int msgctl(int id, int cmd, void *buf)'),
    semget: () => lib.func('int semget(int key, int nsems, int flags)'),
    semctl: () => lib.func('int semctl(int id, int num, int cmd, void *arg)'),
    // POSIX message queues. mq_open is variadic; mode and attr go in the
    // same registers.
    mqOpen: () => lib.func('int mq_open(str name, int oflag, uint mode, void *attr)'),
    mqUnlink: () => lib.func('int mq_unlink(str name)'),
    mqGetattr: () => lib.func('int mq_getattr(int mqdes, void *attr)'),
    mqTimedreceive: () =>
      lib.func('long mq_timedreceive(int mqdes, void *msg, ulong len, void *prio, void *ts)'),
    mqTimedsend: () =>
      lib.func('int mq_timedsend(int mqdes, void *msg, ulong len, uint prio, void *ts)'),
    sigfillset: () => lib.func('int sigfillset(void *set)'),
    pthreadSigmask: () => lib.func('int pthread_sigmask(int how, void *set, void *old)'),
    sigemptyset: () => lib.func('int sigemptyset(void *set)'),
    clockGettime: () => lib.func('int clock_gettime(int clock, void *ts)'),
  });
}

let bound: ReturnType<typeof bind> | undefined;

/** The libc bindings, loaded on first use. */
export function libc(): ReturnType<typeof bind> {
  bound ??= bind();
  return bound;
}

/** errno of the last libc call made through koffi on this thread. */
export function errno(): number {
  return koffi().errno();
}

/** Reset errno, for calls (like PTRACE_PEEKUSER) whose -1 may be a value. */
export function clearErrno(): void {
  koffi().errno(0);
}

/** Address of a Buffer's memory, for fields of structs passed to the kernel. */
export function addressOf(buf: Buffer): bigint {
  return koffi().address(buf);
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM',
  2: 'ENOENT',
  3: 'ESRCH',
  4: 'EINTR',
  5: 'EIO',
  8: 'ENOEXEC',
  9: 'EBADF',
  10: 'ECHILD',
  11: 'EAGAIN',
  12: 'ENOMEM',
  13: 'EACCES',
  14: 'EFAULT',
  16: 'EBUSY',
  22: 'EINVAL',
  38: 'ENOSYS',
};

/** Symbolic name of an errno value ("EPERM"), or "errno N". */
export function errnoName(e: number): string {
  return ERRNO_NAMES[e] ?? getSystemErrorMap().get(-e)?.[0] ?? `errno ${e}`;
}

/** An errno for people: "ENOENT (no such file or directory)". */
export function errnoText(e: number): string {
  const message = getSystemErrorMap().get(-e)?.[1];
  return message ? `${errnoName(e)} (${message})` : errnoName(e);
}

// errnos callers need to tell apart get their own codes: the process is
// gone, not allowed, bad address. Anything else is ESYS.
const SPECIFIC_CODES: Record<number, CkptErrorCode> = { 1: 'EPERM', 3: 'ESRCH', 14: 'EFAULT' };

/**
 * The `CkptError` for a failed system call, with the errno and syscall in
 * its context: code ESRCH, EPERM or EFAULT for those errnos, else ESYS.
 */
export function sysError(
  syscall: string,
  err: number,
  what: string,
  context: { pid?: number; fd?: number; address?: bigint } = {},
): CkptError {
  const code: CkptErrorCode = SPECIFIC_CODES[err] ?? 'ESYS';
  return new CkptError(code, `${what}: ${syscall} failed with ${errnoName(err)}`, {
    ...context,
    syscall,
    errno: err,
  });
}
