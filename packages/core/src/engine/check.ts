/**
 * `ckpt check`: probe, on the running kernel, every feature ckpt relies
 * on, by using it for real on a throwaway process (the restore stub).
 */
import { closeSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import type { ArchSupport } from '../arch.js';
import { type CkptError, isCkptError } from '../errors.js';
import { unfreezeTask } from '../kernel/freeze.js';
import { probeOpenByHandle } from '../kernel/handle.js';
import { SyscallInjector } from '../kernel/inject.js';
import { KCMP, kcmp } from '../kernel/kcmp.js';
import { addressOf, errno, libc, sysError } from '../kernel/libc.js';
import { addSeals, getSeals, memfdCreate } from '../kernel/memfd.js';
import { ProcMem } from '../kernel/memory.js';
import { probeNetLock } from '../kernel/net-lock.js';
import { pidfdGetfd, pidfdOpen } from '../kernel/pidfd.js';
import { PR, PR_SET_MM, prctl } from '../kernel/prctl.js';
import { getRseqConfig, PTRACE_O, seccompFilter, setOptions } from '../kernel/ptrace.js';
import { msgCreatePrivate, msgPeekAll, removeIpc } from '../kernel/sysvipc.js';
import { setTcpRepair, TcpRepair } from '../kernel/tcp-repair.js';
import { probeUserfaultfd } from '../kernel/uffd.js';
import { readMaps, readPageRuns, readStatus } from '../proc/index.js';
import type { Registry } from '../registry.js';
import { hostArch } from './checkpoint.js';
import { TaskFactory } from './mktree.js';

const EINVAL = 22;
/** PR_TIMER_CREATE_RESTORE_IDS's argument that reads the setting. */
const PR_TIMER_CREATE_RESTORE_IDS_GET = 2;

/** One probed feature. */
export interface FeatureCheck {
  name: string;
  /** `required` features must be present for checkpoint/restart to work. */
  required: boolean;
  ok: boolean;
  detail: string;
}

/** F_SEAL_GROW (fcntl.h). */
const F_SEAL_GROW = 4;

// Capability bits (linux/capability.h).
const CAPS: Record<string, number> = {
  CAP_SYS_ADMIN: 21,
  CAP_SYS_PTRACE: 19,
  CAP_SETUID: 7,
  CAP_SETGID: 6,
  CAP_SYS_RESOURCE: 24,
  CAP_CHECKPOINT_RESTORE: 40,
};

function probe(name: string, required: boolean, fn: () => string): FeatureCheck {
  try {
    return { name, required, ok: true, detail: fn() };
  } catch (e) {
    return { name, required, ok: false, detail: isCkptError(e) ? e.message : (e as Error).message };
  }
}

/**
 * Probe the kernel features ckpt relies on. Spawns the arch's restore stub
 * (and clones one task out of it) and kills them before returning.
 */
export function checkKernel(registry: Registry): FeatureCheck[] {
  const out: FeatureCheck[] = [];
  let arch: ArchSupport | undefined;
  out.push(
    probe('architecture', true, () => {
      arch = hostArch(registry);
      return `${arch.machine}, kernel ${release()}`;
    }),
  );
  const caps = readStatus(process.pid).capEff;
  for (const [cap, bit] of Object.entries(CAPS)) {
    const needed = cap !== 'CAP_SYS_RESOURCE' && cap !== 'CAP_CHECKPOINT_RESTORE';
    const has = (caps >> BigInt(bit)) & 1n;
    out.push({
      name: cap,
      required: needed,
      ok: has === 1n,
      detail: has
        ? 'held'
        : cap === 'CAP_SYS_RESOURCE'
          ? 'not held: rlimits above ckpt’s own hard limits cannot be restored'
          : 'not held',
    });
  }
  out.push(
    probe('PR_SET_MM_MAP', true, () => {
      const size = Buffer.alloc(4);
      prctl(PR.SET_MM, PR_SET_MM.MAP_SIZE, addressOf(size));
      return `available (struct prctl_mm_map is ${size.readUInt32LE(0)} bytes)`;
    }),
  );
  out.push(
    probe('/proc/PID/pagemap', true, () => {
      const stack = readMaps(process.pid).find((m) => m.kind === 'stack');
      if (!stack) throw new Error('no stack mapping in /proc/self/maps');
      const runs = readPageRuns(process.pid, stack.start, stack.end);
      if (runs.length === 0) throw new Error('pagemap shows no present page');
      return 'present bits readable';
    }),
  );
  out.push(
    probe('kcmp', true, () => {
      kcmp(process.pid, process.pid, KCMP.FILE, 0, 0);
      return 'available';
    }),
  );
  out.push(
    probe('pidfd_open / pidfd_getfd', true, () => {
      const pidfd = pidfdOpen(process.pid);
      const fd = pidfdGetfd(pidfd, 0, process.pid);
      readFileSync(`/proc/self/fdinfo/${fd}`);
      return 'available';
    }),
  );
  out.push(
    probe('memfd_create and seals', false, () => {
      const fd = memfdCreate('ckpt-check');
      try {
        addSeals(fd, F_SEAL_GROW);
        if (getSeals(fd) !== F_SEAL_GROW) throw new Error('the seal did not stick');
      } finally {
        closeSync(fd);
      }
      return 'available (deleted files and memfds are restored through them)';
    }),
  );
  out.push(
    probe('open_by_handle_at', false, () => {
      probeOpenByHandle();
      return 'available (finds the files inotify instances watch)';
    }),
  );
  out.push(
    probe('userfaultfd', false, () => {
      probeUserfaultfd();
      return 'available (restart fills large memory regions with UFFDIO_COPY)';
    }),
  );
  out.push(
    probe('PR_TIMER_CREATE_RESTORE_IDS', false, () => {
      prctl(PR.TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_GET);
      return 'available (POSIX timers come back under their ids)';
    }),
  );
  out.push(probe('SysV IPC ids and MSG_COPY', false, probeSysvIpc));
  out.push(probe('TCP repair mode (TCP_REPAIR)', false, probeTcpRepair));
  out.push(probe('TCP network lock (nftables)', false, probeNetLock));
  out.push(
    probe('[vvar_vclock]', false, () =>
      readMaps(process.pid).some((m) => m.kind === 'vvar_vclock')
        ? 'present (handled as its own mapping)'
        : 'absent (older kernel layout)',
    ),
  );
  if (arch) out.push(...probeWithStub(arch));
  return out;
}

/**
 * The `*_next_id` sysctls (restart gives SysV objects their ids) and
 * msgrcv(MSG_COPY) (checkpoint copies queued messages without taking them),
 * both CONFIG_CHECKPOINT_RESTORE: a private queue of ckpt's namespace is
 * made, peeked at and removed, unless someone has chosen the next id.
 */
function probeSysvIpc(): string {
  for (const kind of ['shm', 'msg', 'sem'] as const) {
    readFileSync(`/proc/sys/kernel/${kind}_next_id`, 'utf8');
  }
  if (readFileSync('/proc/sys/kernel/msg_next_id', 'utf8').trim() !== '-1') {
    return 'kernel.msg_next_id is set (someone is creating objects with chosen ids); MSG_COPY not probed';
  }
  const id = msgCreatePrivate();
  try {
    msgPeekAll(id, 1, 1);
  } finally {
    removeIpc('msg', id);
  }
  return 'available (container SysV objects come back with their ids and messages)';
}

/**
 * TCP_REPAIR on a new socket (CAP_NET_ADMIN): established TCP connections
 * are saved and restored through it.
 */
const AF_INET = 2;
const SOCK_STREAM = 1;

function probeTcpRepair(): string {
  const fd = libc().socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw sysError('socket', errno(), 'making a TCP socket');
  try {
    setTcpRepair(fd, TcpRepair.ON);
    setTcpRepair(fd, TcpRepair.OFF_NO_PROBE);
  } finally {
    closeSync(fd);
  }
  return 'available (established TCP connections are saved and restored)';
}

/** Features that need a live tracee: ptrace, injection, memory, clone3. */
function probeWithStub(arch: ArchSupport): FeatureCheck[] {
  const out: FeatureCheck[] = [];
  const factory = new TaskFactory(arch);
  try {
    let stub = 0;
    out.push(
      probe('ptrace (PTRACE_SEIZE, PTRACE_INTERRUPT)', true, () => {
        stub = factory.probePid();
        return `froze pid ${stub}`;
      }),
    );
    if (!stub) return out;
    out.push(
      probe('syscall injection', true, () => {
        const inj = new SyscallInjector(stub, arch.convention, {
          syscallAddr: arch.stub.syscallAddr,
        });
        try {
          const r = inj.call(arch.syscalls.getpid, []);
          if (Number(r) !== stub) throw new Error(`getpid() in the stub returned ${r}`);
        } finally {
          inj.close();
        }
        return 'getpid() ran inside a stopped task';
      }),
    );
    out.push(
      probe('/proc/PID/mem', true, () => {
        const mem = new ProcMem(stub);
        try {
          const at = arch.stub.scratchAddr;
          mem.write(at, Buffer.from('ckpt'));
          if (mem.read(at, 4).toString() !== 'ckpt') throw new Error('read back differs');
        } finally {
          mem.close();
        }
        return 'read and forced write';
      }),
    );
    out.push(
      probe('xstate (NT_X86_XSTATE or equivalent)', true, () => {
        const h = arch.headerArch(stub);
        return `features 0x${h.features.toString(16)}, ${h.xstateSize} bytes`;
      }),
    );
    out.push(
      probe('PTRACE_GET_RSEQ_CONFIGURATION', false, () => {
        const c = getRseqConfig(stub);
        return `available (the stub has ${c.size === 0 ? 'no' : 'an'} rseq area; threads' are restored)`;
      }),
    );
    out.push(
      probe('seccomp (PTRACE_O_SUSPEND_SECCOMP, PTRACE_SECCOMP_GET_FILTER)', false, () => {
        setOptions(stub, PTRACE_O.SUSPEND_SECCOMP);
        setOptions(stub, 0);
        try {
          seccompFilter(stub, 0);
        } catch (e) {
          // The stub has no filter: EINVAL says the request itself is known.
          if ((e as CkptError).context?.errno !== EINVAL) throw e;
        }
        return 'filters can be suspended and read (tasks under seccomp)';
      }),
    );
    out.push(
      probe('clone3 with set_tid', true, () => {
        const task = factory.create(undefined, 17);
        unfreezeTask(task, 'kill');
        // And with a chosen pid: the one just freed.
        const again = factory.create(task.pid, 17);
        unfreezeTask(again, 'kill');
        return `created pid ${task.pid} twice`;
      }),
    );
  } finally {
    factory.destroyAll();
  }
  return out;
}
