/** `ArchSupport` for x86-64: what core's engine needs from this package. */
import { type ArchHeader, ArchId, type ArchSupport, type SyscallName } from '@ckpt/core';
import { CPU_X86_64_RECORD, formatCpuRecord } from './cpu.js';
import {
  X86_MARKER_STUB_END,
  x86BatchCode,
  x86MarkerStub,
  x86ResumeCode,
  x86StubResult,
} from './resume.js';
import { x86_64Stub } from './stub.js';
import { NR, x86_64Syscalls } from './syscall.js';
import { assertXstateCompatible, decodeXstateInfo, readXstate } from './xstate.js';

/** x86-64 numbers of every syscall core and the subsystems inject. */
export const X86_64_SYSCALLS: Readonly<Record<SyscallName, number>> = {
  read: NR.read,
  write: NR.write,
  close: NR.close,
  close_range: NR.close_range,
  lseek: NR.lseek,
  brk: NR.brk,
  mmap: NR.mmap,
  mprotect: NR.mprotect,
  munmap: NR.munmap,
  mremap: NR.mremap,
  madvise: NR.madvise,
  mlock: 149,
  mlock2: 325,
  mseal: 462,
  shmat: NR.shmat,
  openat: NR.openat,
  dup3: NR.dup3,
  fcntl: NR.fcntl,
  ioctl: NR.ioctl,
  chdir: 80,
  fchdir: 81,
  chroot: 161,
  umask: 95,
  getpid: NR.getpid,
  kill: NR.kill,
  setpgid: NR.setpgid,
  getpgid: NR.getpgid,
  setsid: NR.setsid,
  getsid: NR.getsid,
  setgroups: 116,
  setresuid: 117,
  setresgid: 119,
  setfsuid: 122,
  setfsgid: 123,
  capget: 125,
  capset: 126,
  prctl: NR.prctl,
  arch_prctl: NR.arch_prctl,
  personality: NR.personality,
  rt_sigaction: NR.rt_sigaction,
  rt_sigprocmask: NR.rt_sigprocmask,
  sigaltstack: NR.sigaltstack,
  rt_sigqueueinfo: NR.rt_sigqueueinfo,
  rt_tgsigqueueinfo: NR.rt_tgsigqueueinfo,
  set_tid_address: NR.set_tid_address,
  set_robust_list: NR.set_robust_list,
  get_robust_list: 274,
  prlimit64: NR.prlimit64,
  pidfd_open: NR.pidfd_open,
  pidfd_getfd: 438,
  pipe2: 293,
  clone3: NR.clone3,
  wait4: NR.wait4,
  setns: NR.setns,
  unshare: NR.unshare,
  exit_group: NR.exit_group,
  uname: 63,
  sethostname: 170,
  setdomainname: 171,
  mount: 165,
  rseq: 334,
  eventfd2: 290,
  epoll_create1: 291,
  epoll_ctl: 233,
  signalfd4: 289,
  inotify_init1: 294,
  inotify_add_watch: 254,
  inotify_rm_watch: 255,
  timerfd_create: 283,
  timerfd_settime: 286,
  socket: 41,
  bind: 49,
  connect: 42,
  listen: 50,
  accept4: 288,
  setsockopt: 54,
  socketpair: 53,
  mq_open: 240,
  userfaultfd: 323,
  flock: 73,
  getitimer: 36,
  setitimer: 38,
  timer_create: 222,
  timer_settime: 223,
  timer_gettime: 224,
  seccomp: 317,
};

/** This CPU's xstate features and size, read from a stopped task's xstate. */
function xstateOf(pid: number) {
  return decodeXstateInfo(readXstate(pid));
}

/** x86-64 support for the engine. */
export const x86_64Arch: ArchSupport = {
  archId: ArchId.X86_64,
  machine: 'x86_64',
  // _NSIG on x86: signals 1..64.
  nsig: 64,
  convention: {
    ...x86_64Syscalls,
    resumeCode: x86ResumeCode,
    batchCode: x86BatchCode,
    markerStub: { code: x86MarkerStub, end: X86_MARKER_STUB_END, result: x86StubResult },
  },
  syscalls: X86_64_SYSCALLS,
  headerArch(pid: number): ArchHeader {
    const info = xstateOf(pid);
    return { features: info.xfeatures, xstateSize: info.xstateSize, data: Buffer.alloc(0) };
  },
  checkHeaderArch(h: ArchHeader, pid: number): void {
    assertXstateCompatible(h.features, xstateOf(pid).xfeatures);
  },
  stub: x86_64Stub,
  formatCpu: (type, value) =>
    type === CPU_X86_64_RECORD
      ? formatCpuRecord(value as Parameters<typeof formatCpuRecord>[0])
      : undefined,
};
