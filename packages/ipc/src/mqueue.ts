/**
 * POSIX message queues (mq_overview(7)): each fd the tree has on one, and
 * the queue behind it, saved once (an `mqueue` object).
 *
 * A queue lives in an ipc namespace, under a name. One of the host's
 * namespace (a subtree's) outlives the tree here, like a file: its name,
 * owner, mode and limits are saved, not its messages, and restart opens it
 * again, or makes it empty (with a warning) where it is gone. One of a
 * namespace the tree owns (a container's) goes with it: its messages are
 * saved too, taken out of the queue and put back at once, in the order
 * receivers get them (by priority, then age); restart makes it again in
 * the container's new namespace with them. A queue unlinked while open is
 * made under a name of its own and unlinked again once every fd is open.
 *
 * The queues of a namespace the tree owns are all saved with its SysV
 * objects (see sysvipc.ts and {@link saveNamespaceQueues}), also those no
 * process has open (a message left for a later reader); an fd on one
 * then names the object saved there.
 *
 * Refused: a queue with a notification registered (mq_notify: the kernel
 * does not show the value it delivers, and putting messages back would
 * fire it); an unlinked queue with messages that the tree can only read or
 * only write (ckpt could not both take and put them back).
 */
import { closeSync, fchmodSync, fchownSync, fstatSync, openSync, readSync } from 'node:fs';
import {
  type CheckpointCtx,
  CkptError,
  type FileHandler,
  type FileInfo,
  inNamespaceOf,
  isMessageQueueFd,
  type ListedQueue,
  type MqMessage,
  mqAttr,
  mqCreate,
  mqNotifyPid,
  mqOpenExisting,
  mqPutAll,
  mqTakeAll,
  mqUnlink,
  type ObjectOps,
  ownNamespace,
  type RecordValue,
  type RestartCtx,
  type RestartTask,
  stage,
  withFdCopy,
  withMq,
} from '@ckpt/core';
import { fileMqueueRecord, ipcMqueuesRecord, mqueueRecord } from './records.js';

export const MQUEUE_OBJECT = 'mqueue';
/** File handler id (after @ckpt/fs's kinds). */
const MQUEUE_FILE_KIND = 17;
const O_ACCMODE = 3;
const O_RDWR = 2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

/** What the checkpoint hands the object: where to read the queue. */
interface SavedQueue {
  pid: number;
  fd: number;
  name: string;
  deleted: boolean;
  host: boolean;
  /** The tree's access mode on it (an unlinked one is read through the tree's fd). */
  flags: number;
}

/** A restored queue: the name it has in its task's namespace now. */
interface RestoredQueue {
  name: string;
}

function isMessageQueue(file: FileInfo): boolean {
  return file.target.kind === 'path' && isMessageQueueFd(file.pid, file.fd);
}

/**
 * The pid of a process registered for notification on the queue
 * (mq_notify), 0 if none: reading a queue's fd gives its state as text
 * ("QSIZE:… NOTIFY:… SIGNO:… NOTIFY_PID:…").
 */
function notifyPid(file: FileInfo): number {
  // Through /proc: a description of ckpt's own, readable whatever the tree's access.
  const fd = openSync(`/proc/${file.pid}/fd/${file.fd}`, 'r');
  let text: string;
  try {
    const buf = Buffer.alloc(256);
    text = buf.toString('latin1', 0, readSync(fd, buf, 0, buf.length, 0));
  } finally {
    closeSync(fd);
  }
  return mqNotifyPid(text);
}

/**
 * Owner, mode, limits and, with `keepMessages`, the messages of the queue
 * open for reading at `fd`; the messages are put back at once through
 * `putBack` (undefined: the fd is not readable, so there must be none).
 */
function readQueue(
  fd: number,
  keepMessages: boolean,
  putBack: ((messages: MqMessage[]) => void) | undefined,
  what: string,
) {
  const attr = mqAttr(fd);
  const st = fstatSync(fd);
  let messages: MqMessage[] = [];
  if (keepMessages && attr.curmsgs > 0) {
    if (!putBack) {
      throw new CkptError('ENOTSUP', `${what} holds messages ckpt cannot read back and put back`);
    }
    messages = mqTakeAll(fd, attr.msgsize);
    putBack(messages);
  }
  return { attr, uid: st.uid, gid: st.gid, mode: st.mode & 0o777, messages };
}

export const mqueueObject: ObjectOps<SavedQueue | RestoredQueue> = {
  name: MQUEUE_OBJECT,
  id: 13,
  checkpoint(ctx, obj) {
    const q = obj as SavedQueue;
    const what = `message queue ${q.name} of pid ${q.pid}`;
    // A host queue outlives the tree here, unless it was unlinked.
    const keep = !q.host || q.deleted;
    const saved = q.deleted
      ? // Only the tree's fd reaches it: read and put back through a copy.
        withFdCopy(q.pid, q.fd, (fd) =>
          readQueue(
            fd,
            keep,
            (q.flags & O_ACCMODE) === O_RDWR ? (m) => mqPutAll(fd, m) : undefined,
            `${what} (unlinked)`,
          ),
        )
      : // By name, on ckpt's own description: the tree's flags stay as they are.
        inNamespaceOf(q.pid, 'ipc', `of pid ${q.pid}`, () => {
          const fd = mqOpenExisting(q.name, false);
          if (fd === undefined) {
            throw new CkptError('ENOENT', `${what}: no queue of that name any more`, {
              pid: q.pid,
            });
          }
          // Taken through this fd, put back through one open for writing.
          const putBack = (m: MqMessage[]) =>
            withMq(mqOpenExisting(q.name, true)!, (w) => mqPutAll(w, m));
          return withMq(fd, (r) => readQueue(r, keep, putBack, what));
        });
    ctx.write(mqueueRecord, {
      name: q.name,
      deleted: q.deleted,
      host: q.host,
      uid: saved.uid,
      gid: saved.gid,
      mode: saved.mode,
      maxmsg: saved.attr.maxmsg,
      msgsize: saved.attr.msgsize,
      messages: saved.messages,
    });
  },
  restore(ctx) {
    const rec = ctx.read(mqueueRecord);
    const task = restoringTask(ctx);
    const name = rec.deleted ? `/ckpt-mq-${task.savedPid}-${process.pid}-${Date.now()}` : rec.name;
    inNamespaceOf(task.pid, 'ipc', `of pid ${task.pid}`, () => {
      const attr = { maxmsg: rec.maxmsg, msgsize: rec.msgsize, curmsgs: 0 };
      const fd = mqCreate(name, attr, rec.mode);
      if (fd === undefined) {
        if (!rec.host) {
          throw new CkptError(
            'EEXIST',
            `restoring message queue ${name}: a queue of that name exists already in pid ${task.savedPid}'s new ipc namespace`,
            { pid: task.savedPid },
          );
        }
        // The host's queue, still here: the tree opens it again.
        const existing = mqOpenExisting(name, false);
        if (existing !== undefined) {
          withMq(existing, (r) => {
            const now = mqAttr(r);
            if (now.maxmsg !== rec.maxmsg || now.msgsize !== rec.msgsize) {
              throw new CkptError(
                'ESTALE',
                `message queue ${name} now holds ${now.maxmsg} messages of ${now.msgsize} bytes, not ${rec.maxmsg} of ${rec.msgsize} as at the checkpoint; remove it (mq_unlink) to have it made again`,
                { pid: task.savedPid },
              );
            }
          });
        }
        return;
      }
      withMq(fd, (w) => {
        // mq_open's mode went through ckpt's umask.
        fchmodSync(w, rec.mode);
        fchownSync(w, rec.uid, rec.gid);
        mqPutAll(w, rec.messages);
      });
      if (rec.host && !rec.deleted) {
        ctx.log.warn(
          `message queue ${name} was gone: made again, empty (its messages stayed where it was checkpointed)`,
        );
      }
    });
    if (rec.deleted) {
      // Every fd of the tree on it is open by then.
      ctx.deferqueue.add(name, (n) =>
        inNamespaceOf(task.pid, 'ipc', `of pid ${task.pid}`, () => mqUnlink(n)),
      );
    }
    return { name };
  },
  describe: (q) => `message queue ${q.name}`,
};

/** The refusal of a queue with a notification registered by `owner`. */
function notifiedError(where: string, owner: number, pid: number, fd?: number): CkptError {
  return new CkptError(
    'ENOTSUP',
    `${where} has a notification registered (mq_notify, by pid ${owner}); ckpt cannot restore it`,
    { pid, fd },
  );
}

/** The objhash key of a queue: its identity, as an fd on it shows it. */
function queueKey(dev: number, ino: number): string {
  return `mq:${dev}:${ino}`;
}

/**
 * Save every queue of the ipc namespace of `pid` (one the tree owns), as
 * {@link mqList} listed it from inside, then an `ipc_mqueues` record
 * naming them. The tree's fds on them, saved later, name these objects.
 * @throws CkptError ENOTSUP for a queue with a notification registered
 */
export function saveNamespaceQueues(ctx: CheckpointCtx, pid: number, queues: ListedQueue[]): void {
  const objrefs = queues.map((q) => {
    if (q.notifyPid !== 0) {
      throw notifiedError(
        `message queue ${q.name} of pid ${pid}'s ipc namespace`,
        q.notifyPid,
        pid,
      );
    }
    const saved: SavedQueue = {
      pid,
      fd: -1,
      name: q.name,
      deleted: false,
      host: false,
      flags: O_RDWR,
    };
    return ctx.checkpointObj(MQUEUE_OBJECT, queueKey(q.dev, q.ino), saved);
  });
  ctx.write(ipcMqueuesRecord, { queues: objrefs });
}

/** Restore the queues {@link saveNamespaceQueues} saved, in the namespace of `task`. */
export function restoreNamespaceQueues(ctx: RestartCtx, task: RestartTask): void {
  restoringTasks.set(ctx, task);
  try {
    ctx.read(ipcMqueuesRecord);
  } finally {
    restoringTasks.delete(ctx);
  }
}

/** The task being restored, for the queue's namespace. */
function restoringTask(ctx: RestartCtx): RestartTask {
  const task = restoringTasks.get(ctx);
  if (!task) throw new CkptError('EBADREC', 'a message queue restored outside an fd table');
  return task;
}
const restoringTasks = new WeakMap<RestartCtx, RestartTask>();

export const mqueueFile: FileHandler = {
  kind: 'mqueue',
  id: MQUEUE_FILE_KIND,
  match: isMessageQueue,
  checkpoint(ctx: CheckpointCtx, task, file) {
    const where = `pid ${file.pid} fd ${file.fd}: message queue ${file.target.path}`;
    const owner = notifyPid(file);
    if (owner !== 0) throw notifiedError(where, owner, file.pid, file.fd);
    const host = ctx.namespaces.inode(task.pid, 'ipc') === ownNamespace('ipc');
    const saved: SavedQueue = {
      pid: file.pid,
      fd: file.fd,
      name: file.target.path ?? file.target.text,
      deleted: file.target.deleted === true,
      host,
      flags: file.info.flags,
    };
    const queue = ctx.checkpointObj(MQUEUE_OBJECT, queueKey(file.stat.dev, file.stat.ino), saved);
    ctx.write(fileMqueueRecord, { queue, flags: file.info.flags & (O_ACCMODE | O_NONBLOCK) });
  },
  restore(ctx, task) {
    // The queue's own record comes first (the first fd on it): it is
    // restored while this record is read, in this task's namespace.
    restoringTasks.set(ctx, task);
    let q: RestoredQueue;
    let rec: RecordValue<typeof fileMqueueRecord>;
    try {
      rec = ctx.read(fileMqueueRecord);
      q = ctx.fetchObj<RestoredQueue>(rec.queue, MQUEUE_OBJECT);
    } finally {
      restoringTasks.delete(ctx);
    }
    const what = `opening message queue ${q.name}`;
    // The system call takes the name without glibc's leading slash.
    const [name] = stage(task, [Buffer.from(`${q.name.replace(/^\//, '')}\0`)]);
    return Number(task.sys.check('mq_open', [name!, rec.flags | O_CLOEXEC, 0, 0], what));
  },
};
