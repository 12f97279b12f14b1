/** The file subsystem's records (301–399) and the fs record (451). */
import {
  array,
  bool,
  bytes,
  defineRecord,
  i32,
  RecordType,
  str,
  struct,
  u8,
  u32,
  u64,
} from '@ckpt/core';

/**
 * Socket options that differ from a new socket's (socket-options.ts): an
 * int in `value`, or, for one that is not an int (SO_LINGER's struct
 * linger, SO_RCVTIMEO's struct timeval, TCP_CONGESTION's name), the bytes
 * getsockopt gave in `raw` (empty for an int), set again as they are.
 */
const socketOptionList = () =>
  array(struct({ level: u32(), name: u32(), value: i32(), raw: bytes(64) }), 256);

/** Ids of ckpt's own file handlers (the `kind` field of file records). */
export const FileKind = {
  REGULAR: 1,
  CHRDEV: 2,
  EXTERNAL: 3,
  PIPE: 4,
  GHOST: 5,
  EVENTFD: 6,
  SIGNALFD: 7,
  EPOLL: 8,
  INOTIFY: 9,
  TIMERFD: 10,
  LISTEN_SOCKET: 11,
  UNIX_PAIR: 12,
  PTY: 13,
  PIDFD: 14,
  TCP: 15,
  NETLINK: 16,
} as const;

/** Printable names of {@link FileKind}. */
export const FILE_KIND_NAMES: Record<number, string> = {
  1: 'regular',
  2: 'chrdev',
  3: 'external',
  4: 'pipe',
  5: 'ghost',
  6: 'eventfd',
  7: 'signalfd',
  8: 'epoll',
  9: 'inotify',
  10: 'timerfd',
  11: 'listen-socket',
  12: 'unix-pair',
  13: 'pty',
  14: 'pidfd',
  15: 'tcp',
  16: 'netlink',
};

/** File types a file reopened by path may have (the `type` of a file_name record). */
export const PathType = {
  REGULAR: 1,
  DIRECTORY: 2,
  CHR: 3,
} as const;

/** Printable names of {@link PathType}. */
export const PATH_TYPE_NAMES: Record<number, string> = {
  1: 'regular',
  2: 'directory',
  3: 'chr',
};

/**
 * Record type of an external file. Core's RecordType table stops at
 * PIPE_BUF (305); this is the next number of the files range.
 */
export const FILE_EXTERNAL = 306;

/** The fd table of a task: the fd numbers its file_desc records restore, ascending. */
export const fileTableRecord = defineRecord(RecordType.FILE_TABLE, 'file_table', 'fd table', {
  fds: array(u32(), 1 << 20),
});

/** One fd: which open file (objref of a `file` object) and its close-on-exec flag. */
export const fileDescRecord = defineRecord(RecordType.FILE_DESC, 'file_desc', 'file descriptor', {
  fd: u32(),
  objref: u32(),
  cloexec: bool(),
});

/**
 * An open file description, once per image: which handler restores it
 * (its own record follows) and, for messages, the fd it was first seen
 * at and what /proc showed there.
 */
export const fileRecord = defineRecord(RecordType.FILE, 'file', 'open file', {
  kind: u32('dec', FILE_KIND_NAMES),
  fd: u32(),
  target: str(8192),
});

/** A file reopened by path: regular file, directory or simple device. */
export const fileNameRecord = defineRecord(
  RecordType.FILE_NAME,
  'file_name',
  'file reopened by path',
  {
    path: str(4096),
    type: u32('dec', PATH_TYPE_NAMES),
    /** Open flags as fdinfo showed them, without O_CLOEXEC. */
    flags: u32('octal'),
    pos: u64(),
    /** Device numbers, for a device. */
    rdevMajor: u32(),
    rdevMinor: u32(),
    /** The file's identity at checkpoint (st_dev, st_ino): on the same boot, restart tells a replaced file. */
    dev: u64(),
    ino: u64(),
  },
);

/** A file that leads outside the checkpointed process (tty, pipe, socket, FIFO). */
export const fileExternalRecord = defineRecord(
  FILE_EXTERNAL,
  'file_external',
  'fd leading outside the checkpoint',
  {
    /** The fd number it had: restart connects it to the restarter's fd of that number by default. */
    fd: u32(),
    /** Open flags as fdinfo showed them, without O_CLOEXEC. */
    flags: u32('octal'),
    /** What it was connected to, as /proc showed it. */
    target: str(8192),
    /**
     * For a terminal: its modes then (raw `struct termios2`), which a
     * foreground restart gives the terminal it hands the job; else empty.
     */
    termios: bytes(64),
  },
);

/** cwd, root and umask of a task. */
export const fsRecord = defineRecord(RecordType.FS, 'fs', 'cwd, root and umask', {
  cwd: str(4096),
  root: str(4096),
  umask: u32('octal'),
});

/** Record type of a pipe end (the next number of the files range). */
export const FILE_PIPE = 307;

/** One end of a pipe restored inside the tree: which pipe (objref of a `pipe` object) and which end. */
export const filePipeRecord = defineRecord(FILE_PIPE, 'file_pipe', 'pipe end', {
  pipe: u32(),
  /** The read end (else the write end). */
  read: bool(),
  /** Open flags as fdinfo showed them, without O_CLOEXEC. */
  flags: u32('octal'),
});

/**
 * A pipe or FIFO, once per image (the seed's pipe_buf): its capacity, how
 * many open file descriptions of each end the tree holds, and the data
 * buffered in it.
 */
export const pipeBufRecord = defineRecord(RecordType.PIPE_BUF, 'pipe_buf', 'pipe and its data', {
  inode: u64(),
  size: u32(),
  /** Open file descriptions reading it (O_RDWR ones of a FIFO included). */
  readers: u32(),
  /** Open file descriptions only writing it. */
  writers: u32(),
  data: bytes(1 << 28),
  /** A FIFO's path, reopened at restart; empty for a pipe. */
  path: str(4096),
});

/** Record types of deleted files (the next numbers of the files range). */
export const GHOST_FILE = 308;
export const GHOST_DATA = 309;
export const FILE_GHOST = 310;

/**
 * A deleted file (see ghost.ts), once per image, right after the objref
 * record that defines it; `chunks` ghost_data records follow.
 */
export const ghostFileRecord = defineRecord(GHOST_FILE, 'ghost_file', 'deleted file', {
  /** Its inode at checkpoint (for messages only). */
  inode: u64(),
  /**
   * Its path before it was deleted, where restart recreates it, unlinked;
   * for a memfd, "/memfd:" and its name.
   */
  path: str(4096),
  /** Permission bits. */
  mode: u32('octal'),
  size: u64(),
  chunks: u32(),
  /** A memfd's seals (F_SEAL_*); 0 for any other file. */
  seals: u32('hex'),
  /**
   * A program's executable: ckpt keeps only a read-only open file on it
   * after filling it (the kernel refuses an exe anything has open for
   * writing, and the mappings made from ckpt's file would count).
   */
  readOnly: bool(),
});

/** Part of a deleted file's data: at most 4 MiB at `offset` (holes are not saved). */
export const ghostDataRecord = defineRecord(GHOST_DATA, 'ghost_data', 'deleted file data', {
  offset: u64('hex'),
  data: bytes(4 << 20),
});

/** An open deleted file: which one (objref of a `ghost` object), its flags and offset. */
export const fileGhostRecord = defineRecord(FILE_GHOST, 'file_ghost', 'open deleted file', {
  ghost: u32(),
  /** Open flags as fdinfo showed them, without O_CLOEXEC. */
  flags: u32('octal'),
  pos: u64(),
});

/** Record types of event files (the next numbers of the files range). */
export const FILE_EVENTFD = 311;
export const FILE_SIGNALFD = 312;
export const FILE_EPOLL = 313;

/** An eventfd: its counter and mode. */
export const fileEventfdRecord = defineRecord(FILE_EVENTFD, 'file_eventfd', 'eventfd', {
  count: u64(),
  /** EFD_SEMAPHORE: each read takes 1. */
  semaphore: bool(),
  /** Open flags as fdinfo showed them, without O_CLOEXEC (O_NONBLOCK matters). */
  flags: u32('octal'),
});

/** A signalfd: the signals it reads (bit n-1 = signal n). */
export const fileSignalfdRecord = defineRecord(FILE_SIGNALFD, 'file_signalfd', 'signalfd', {
  sigmask: u64('hex'),
  flags: u32('octal'),
});

/**
 * An epoll instance and what it watches: each target by its fd number in
 * the task that restores it (the same file there at checkpoint), with its
 * events and data.
 */
export const fileEpollRecord = defineRecord(FILE_EPOLL, 'file_epoll', 'epoll instance', {
  flags: u32('octal'),
  targets: array(struct({ fd: u32(), events: u32('hex'), data: u64('hex') }), 1 << 16),
});

export const FILE_INOTIFY = 314;

/** An inotify instance: each watch with its descriptor, mask and the watched path. */
export const fileInotifyRecord = defineRecord(FILE_INOTIFY, 'file_inotify', 'inotify instance', {
  flags: u32('octal'),
  watches: array(struct({ wd: u32(), mask: u32('hex'), path: str(4096) }), 1 << 16),
});

export const FILE_TIMERFD = 315;

/** A timerfd: its clock, the time left and the period, and expirations not read yet. */
export const fileTimerfdRecord = defineRecord(FILE_TIMERFD, 'file_timerfd', 'timerfd', {
  clockid: u32(),
  flags: u32('octal'),
  /** Time left until it fires next, in ns (0: disarmed). */
  valueNs: u64(),
  intervalNs: u64(),
  /** Expirations not read yet. */
  ticks: u64(),
  /** timerfd_settime's flags (1 TFD_TIMER_ABSTIME, 2 TFD_TIMER_CANCEL_ON_SET). */
  settimeFlags: u32('hex'),
  /** With TFD_TIMER_ABSTIME: when it fires next, on its clock as the task saw it (0: not known). */
  deadlineNs: u64(),
});

export const FILE_SOCKET = 316;

/** A listening or unconnected socket: what it is and its address (see listen-socket.ts). */
export const fileSocketRecord = defineRecord(
  FILE_SOCKET,
  'file_socket',
  'listening, unconnected or datagram socket',
  {
    family: u32(),
    type: u32(),
    protocol: u32(),
    /** The raw sockaddr getsockname gave. */
    addr: bytes(128),
    /** It listens (TCP, unix stream/seqpacket); else an unconnected UDP socket. */
    listens: bool(),
    /** A listener's backlog (what listen(2) was given, capped at somaxconn); 0: unknown (restart uses somaxconn). */
    backlog: u32(),
    reuseAddr: bool(),
    reusePort: bool(),
    v6only: bool(),
    flags: u32('octal'),
    /** A unix socket's file mode. */
    mode: u32('octal'),
    /**
     * Where a unix socket's file is now: its bound path as a rule, another
     * name when the program renamed it after bind() (the JVM's attach
     * socket), '' when it removed it. Restart binds to the bound path, then
     * renames or removes the file the same way.
     */
    file: str(4096),
    /**
     * For a unix socket bound with a relative path (postfix's
     * `public/pickup`): the directory it names the file from (the
     * process's cwd at checkpoint); restart binds it from there. '' for an
     * absolute path.
     */
    dir: str(4096),
    /** Options that differ from a new socket's (IP_PKTINFO, buffer sizes, TCP_DEFER_ACCEPT, SO_RCVTIMEO...), set again before bind. */
    options: socketOptionList(),
    /**
     * The raw sockaddr a datagram socket is connected to (a UDP peer, or a
     * named unix socket outside the tree such as syslog's /dev/log),
     * connected to again after bind; empty: none.
     */
    peer: bytes(128),
    /** The interface it is bound to (SO_BINDTODEVICE), '' if none. */
    device: str(16),
    /** Its classic BPF filter (SO_ATTACH_FILTER: struct sock_filter instructions), empty if none. */
    filter: bytes(1 << 16),
  },
);

export const UNIX_PAIR = 317;
export const FILE_UNIX = 318;

/** A connected pair of unix sockets, both in the tree: the bytes waiting at each end. */
export const unixPairRecord = defineRecord(UNIX_PAIR, 'unix_pair', 'connected unix socket pair', {
  /** SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET. */
  type: u32(),
  /** The two ends' inodes at checkpoint, ascending. */
  inodes: array(u64(), 2),
  /** Bytes waiting in each end's receive queue, in `inodes` order. */
  queues: array(bytes(1 << 26), 2),
  /**
   * Each end's SO_PEERCRED, in `inodes` order: the process (as ckpt saw
   * it) and effective ids of whoever made the other side (socketpair(2),
   * connect(2) or listen(2)); zeros for a missing end.
   */
  peerCreds: array(struct({ pid: u32(), uid: u32(), gid: u32() }), 2),
});

/** One end of a unix socket pair (objref of a `unix-pair` object) and its flags. */
export const fileUnixRecord = defineRecord(FILE_UNIX, 'file_unix', 'unix socket pair end', {
  pair: u32(),
  /** 0 or 1, in the pair's `inodes` order. */
  end: u32(),
  flags: u32('octal'),
  /** Options of this end that differ from a new socket's (SO_PASSCRED, SO_SNDBUF, SO_RCVTIMEO...), set again. */
  options: socketOptionList(),
});

export const PTY = 319;
export const FILE_PTY = 320;

/**
 * A pseudo-terminal whose master the tree holds: its modes, window size,
 * output the master has not read yet, and the session it controls.
 */
export const ptyRecord = defineRecord(PTY, 'pty', 'pseudo-terminal', {
  /** N of /dev/pts/N at checkpoint (restart gets whichever number is free). */
  index: u32(),
  /** `struct termios2` of the terminal, raw. */
  termios: bytes(64),
  /** `struct winsize`, raw. */
  winsize: bytes(8),
  packetMode: bool(),
  /** The slave is locked (unlockpt not called yet). */
  locked: bool(),
  /** Output written to the slave that the master has not read yet. */
  output: bytes(1 << 20),
  /** Session leader whose controlling terminal it is (0: none in the tree). */
  sessionLeader: u32(),
  /** Its foreground process group. */
  foreground: u32(),
});

/** An end of a pty (objref of a `pty` object): the master or a slave, and its flags. */
export const filePtyRecord = defineRecord(FILE_PTY, 'file_pty', 'pty end', {
  pty: u32(),
  master: bool(),
  flags: u32('octal'),
  /** Opened as /dev/tty (the task's controlling terminal, this pty): opened so again. */
  devTty: bool(),
});

export const FILE_LOCKS = 321;

/**
 * The file locks a task holds, each with an fd it was seen on (see
 * locks.ts): after the task's fd table.
 */
export const fileLocksRecord = defineRecord(FILE_LOCKS, 'file_locks', 'file locks', {
  locks: array(
    struct({
      fd: u32(),
      /** 0: fcntl record lock (POSIX), 1: flock, 2: open-file-description lock. */
      kind: u32(),
      write: bool(),
      start: u64(),
      /** Bytes locked; 0: up to the end of the file, however long it grows. */
      len: u64(),
    }),
    1 << 16,
  ),
});

export const FILE_PIDFD = 322;

/** A pidfd (pidfd_open, clone's CLONE_PIDFD) for a process of the tree. */
export const filePidfdRecord = defineRecord(FILE_PIDFD, 'file_pidfd', 'pidfd', {
  /** The process it refers to, by its pid as ckpt saw it (the tree's host pid). */
  pid: u32(),
  /** O_NONBLOCK (PIDFD_NONBLOCK) and O_EXCL (PIDFD_THREAD: a thread's pidfd). */
  flags: u32('octal'),
});

export const FILE_TCP = 323;

/**
 * An established TCP connection (tcp-socket.ts), read in repair mode: its
 * addresses, sequence numbers, queues, the options agreed at the handshake
 * and its windows, and the socket options a program commonly sets.
 */
export const fileTcpRecord = defineRecord(
  FILE_TCP,
  'file_tcp',
  'established TCP connection (or one its peer closed)',
  {
    /** AF_INET or AF_INET6. */
    family: u32(),
    /** O_NONBLOCK (and the access mode, always read-write). */
    flags: u32('octal'),
    /** Own and peer address, raw sockaddr. */
    addr: bytes(128),
    peer: bytes(128),
    /** Sequence number after the last byte queued to send, and after the last received. */
    sendSeq: u32('hex'),
    recvSeq: u32('hex'),
    mss: u32(),
    /** tcpi_options: timestamps 1, SACK 2, window scaling 4. */
    options: u32('hex'),
    sendWscale: u8(),
    recvWscale: u8(),
    /** The connection's timestamp clock then. */
    timestamp: u32(),
    /** struct tcp_repair_window, raw. */
    window: bytes(32),
    /** SO_REUSEADDR (an accepted connection inherits its listener's; repair mode hides it from socketOptions). */
    reuseAddr: bool(),
    /** How many bytes at the end of sendQueue were never sent (sent after repair mode at restart). */
    sendUnsent: u32(),
    /** Bytes sent and not acknowledged, then bytes not sent yet. */
    sendQueue: bytes(1 << 26),
    /** Bytes received and not read yet. */
    recvQueue: bytes(1 << 26),
    /** Options that differ from a new socket's (TCP_NODELAY, keepalive, IP_TOS, TCP_USER_TIMEOUT, SO_LINGER, TCP_CONGESTION...; not the buffer sizes). */
    socketOptions: socketOptionList(),
    /**
     * The peer had closed its end (CLOSE_WAIT): `recvSeq` stops before its
     * FIN, and restart ends reading (SHUT_RD) so that reads give the end of
     * file after the queued bytes, as they would have.
     */
    peerClosed: bool(),
  },
);

export const FILE_NETLINK = 324;

/**
 * A netlink socket bound to a port id (netlink-socket.ts): its protocol,
 * port id, multicast groups and options. Messages it had not read are not
 * kept.
 */
export const fileNetlinkRecord = defineRecord(FILE_NETLINK, 'file_netlink', 'netlink socket', {
  /** SOCK_RAW or SOCK_DGRAM. */
  type: u32(),
  /** NETLINK_ROUTE 0, NETLINK_KOBJECT_UEVENT 15, ... */
  protocol: u32(),
  /** O_NONBLOCK (and the access mode, always read-write). */
  flags: u32('octal'),
  /** The port id it was bound to (nl_pid). */
  portid: u32(),
  /** The multicast groups it had joined (NETLINK_LIST_MEMBERSHIPS: bit g-1 of word (g-1)/32 for group g). */
  groups: array(u32('hex'), 1 << 16),
  /** Options that differ from a new socket's (NETLINK_NO_ENOBUFS, buffer sizes...). */
  options: socketOptionList(),
});

export const FILE_OWNER = 325;

/**
 * Signal-driven I/O of an open file description (file-owner.ts): who gets
 * its SIGIO/SIGURG (F_SETOWN_EX), which signal (F_SETSIG) and whether
 * O_ASYNC is on. Right after the handler's records of a `file` object,
 * only when any of them is set.
 */
export const fileOwnerRecord = defineRecord(FILE_OWNER, 'file_owner', 'signal-driven I/O owner', {
  /** F_OWNER_TID 0, F_OWNER_PID 1, F_OWNER_PGRP 2. */
  type: u32(),
  /** The thread, process or process group, by its pid as ckpt saw it (0: no owner). */
  pid: u32(),
  /** F_SETSIG's signal (0: SIGIO). */
  sig: u32(),
  /** O_ASYNC was set: the owner gets the signal when I/O is possible. */
  async: bool(),
});
