/**
 * The x86-64 system-call convention, for syscall injection, and the
 * numbers of the syscalls ckpt issues.
 */
import type { SyscallConvention } from '@ckpt/core';
import { getReg, setReg, USER_REGS_SIZE } from './regs.js';

/** x86-64 syscall numbers used by ckpt (arch/x86/entry/syscalls/syscall_64.tbl). */
export const NR = {
  read: 0,
  write: 1,
  open: 2,
  close: 3,
  lseek: 8,
  mmap: 9,
  mprotect: 10,
  munmap: 11,
  brk: 12,
  rt_sigaction: 13,
  rt_sigprocmask: 14,
  rt_sigreturn: 15,
  ioctl: 16,
  pread64: 17,
  pwrite64: 18,
  mremap: 25,
  madvise: 28,
  shmat: 30,
  dup: 32,
  dup2: 33,
  pause: 34,
  nanosleep: 35,
  getitimer: 36,
  setitimer: 38,
  getpid: 39,
  clone: 56,
  fork: 57,
  execve: 59,
  exit: 60,
  wait4: 61,
  kill: 62,
  shmdt: 67,
  fcntl: 72,
  setpgid: 109,
  setsid: 112,
  getpgid: 121,
  getsid: 124,
  sigaltstack: 131,
  personality: 135,
  prctl: 157,
  arch_prctl: 158,
  setrlimit: 160,
  gettid: 186,
  tkill: 200,
  futex: 202,
  set_tid_address: 218,
  restart_syscall: 219,
  timer_settime: 223,
  clock_nanosleep: 230,
  exit_group: 231,
  tgkill: 234,
  openat: 257,
  set_robust_list: 273,
  dup3: 292,
  rt_tgsigqueueinfo: 297,
  prlimit64: 302,
  rt_sigqueueinfo: 129,
  setns: 308,
  unshare: 272,
  clone3: 435,
  close_range: 436,
  pidfd_open: 434,
} as const;

/** Name of a syscall in {@link NR}. */
export type SyscallName = keyof typeof NR;

/**
 * Syscalls that replace the blocked mask while they wait and leave the
 * kernel to put it back on return: rt_sigsuspend, pselect6, ppoll,
 * epoll_pwait, io_pgetevents, epoll_pwait2.
 */
const PARKING = new Set([130n, 270n, 271n, 281n, 333n, 441n]);

/** Where the six syscall arguments go. */
const ARG_REGS = ['rdi', 'rsi', 'rdx', 'r10', 'r8', 'r9'] as const;

/** EFLAGS bits that must not leak into an injected call: trap (single-step) and direction. */
const EFLAGS_TF = 0x100n;
const EFLAGS_DF = 0x400n;

/** The x86-64 (64-bit) syscall convention over `struct user_regs_struct`. */
export const x86_64Syscalls: SyscallConvention = {
  arch: 'x86_64',
  syscallInsn: Buffer.from([0x0f, 0x05]),
  regsSize: USER_REGS_SIZE,
  nr: { mmap: NR.mmap, munmap: NR.munmap },
  getIp: (regs) => getReg(regs, 'rip'),
  setIp: (regs, ip) => setReg(regs, 'rip', ip),
  setSyscall(regs, nr, args) {
    setReg(regs, 'rax', BigInt(nr));
    // orig_rax = -1: the kernel then sees "not in a syscall" and will not
    // apply syscall-restart fixups to the registers we install.
    setReg(regs, 'orig_rax', -1n);
    setReg(regs, 'eflags', getReg(regs, 'eflags') & ~(EFLAGS_TF | EFLAGS_DF));
    ARG_REGS.forEach((name, i) => {
      setReg(regs, name, args[i] ?? 0n);
    });
  },
  getReturn: (regs) => BigInt.asIntN(64, getReg(regs, 'rax')),
  parksSigmask: (regs) => PARKING.has(BigInt.asIntN(64, getReg(regs, 'orig_rax'))),
};
