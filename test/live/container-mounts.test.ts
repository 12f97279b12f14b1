/**
 * A container's own mounts (`ckpt run --container`, then mounts made
 * inside): a tmpfs with every kind of file on it, a tmpfs nested in it, a
 * read-only bind mount of a host directory and an mqueue come back after
 * checkpoint --kill and restart, with the same files (data, holes, owners,
 * permissions, times, links), the same mount options, a program running
 * from the tmpfs and a shell appending to a file there; none of it shows
 * on the host. A read-only tmpfs comes back filled and read-only. A mount
 * ckpt cannot save (devpts) is refused, naming it, and the container
 * keeps running.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ckpt, ckptOk } from '../support/ckpt.js';
import { isAlive } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { requireCommand, requireRoot } from '../support/prereq.js';
import { childrenOf, nsenter, waitFor } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

beforeAll(() => {
  requireRoot();
  for (const cmd of ['unshare', 'nsenter', 'find', 'mknod', 'mkfifo', 'truncate']) {
    requireCommand(cmd);
  }
});

/** Start a container running `script` (sh); returns its init's pid once `dir/ready` exists. */
function startContainer(dir: string, script: string): number {
  const init = Number(ckptOk(['run', '--container', '--', 'sh', '-c', script]).trim());
  leftovers.push(init);
  waitFor('the container to set up its mounts', () => fs.existsSync(path.join(dir, 'ready')));
  return init;
}

/** The container's mounts under `dir`: place, options, type, source, filesystem options. */
function mountsUnder(pid: number, dir: string): string[] {
  return fs
    .readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f[4]?.startsWith(dir))
    .map((f) => {
      const sep = f.indexOf('-');
      return [f[3], f[4], f[5], ...f.slice(sep + 1)].join(' ');
    });
}

/** The files the first test makes on its tmpfs (the loop's log and the mqueue aside). */
const FILES = ['', 'a', 'd', 'd/f', 'link', 'hard', 'fifo', 'null', 'big', 'sparse', 'sleep'];
const NESTED = ['nested', 'nested/x', 'bound', 'bound/h'];

/**
 * `names` under `mnt` as the container sees them: type and mode, owner,
 * size, blocks (holes), times to the nanosecond, link count, device. Only
 * stat(2): reading a directory or a link would change its access time.
 */
function listing(pid: number, mnt: string, names: string[]): string {
  const paths = names.map((n) => (n === '' ? mnt : `${mnt}/${n}`));
  return nsenter(pid, ['-m'], ['stat', '-c', '%n|%A|%u|%g|%s|%b|%.9Y|%.9X|%h|%t:%T', ...paths]);
}

function lines(file: string): number[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map(Number);
}

describe('a container with mounts of its own', () => {
  it('gets its tmpfs (with every file), a nested tmpfs, a read-only bind mount and an mqueue back, and runs on', () => {
    const dir = tmpDir('ckpt-mounts-');
    const mnt = path.join(dir, 'mnt');
    const host = path.join(dir, 'host');
    fs.mkdirSync(mnt);
    fs.mkdirSync(host);
    fs.writeFileSync(path.join(host, 'h'), 'from the host\n');
    const script = [
      'set -e',
      `M=${mnt}`,
      'mount -t tmpfs -o size=64m,mode=0751 scratch $M',
      'echo hello > $M/a',
      'mkdir -m 0700 $M/d && echo sub > $M/d/f && chown 1000:1001 $M/d/f',
      'ln -s a $M/link && ln $M/a $M/hard && mkfifo -m 0620 $M/fifo && mknod $M/null c 1 3',
      'head -c 3000000 /dev/urandom > $M/big',
      'truncate -s 100M $M/sparse && echo tail >> $M/sparse',
      'cp /bin/sleep $M/sleep && chown 1000 $M/sleep && chmod 4755 $M/sleep',
      'mkdir $M/nested && mount -t tmpfs inner $M/nested && echo in > $M/nested/x',
      `mkdir $M/bound && mount --bind ${host} $M/bound && mount -o remount,bind,ro $M/bound`,
      'mkdir $M/mq && mount -t mqueue mq $M/mq',
      '$M/sleep 1000 &',
      'exec 3>>$M/log',
      `touch ${dir}/ready`,
      'i=0; while :; do i=$((i+1)); echo $i >&3; sleep 0.1; done',
    ].join('\n');
    const init = startContainer(dir, script);
    const log = `/proc/${init}/root${mnt}/log`;
    waitFor('the loop to write', () => lines(log).length >= 3);
    const sleeper = childrenOf(init).find(
      (c) => fs.readlinkSync(`/proc/${c}/exe`) === `${mnt}/sleep`,
    );
    expect(sleeper).toBeDefined();
    // The loop's file changes; the mqueue's root is a new one's after restart.
    const files = listing(init, mnt, [...FILES, ...NESTED]);
    const mounts = mountsUnder(init, mnt);
    expect(mounts).toHaveLength(4);

    // Leaving it running, ckpt reads every file without changing its access time.
    ckptOk(['checkpoint', String(init), '-o', tmpImage()]);
    expect(listing(init, mnt, [...FILES, ...NESTED])).toBe(files);

    const img = tmpImage();
    ckptOk(['checkpoint', String(init), '-o', img, '--kill']);
    waitFor('the container to end', () => !isAlive(init));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(init);

    expect(mountsUnder(init, mnt)).toEqual(mounts);
    // Restart maps the running program from its file, which reads it: its
    // access time is new, as the change time of every restored file is.
    const noAtime = (l: string) => l.replace(/^(\S*\/sleep\|(?:[^|]*\|){6})[^|]*/m, '$1-');
    expect(noAtime(listing(init, mnt, [...FILES, ...NESTED]))).toBe(noAtime(files));
    const inside = (p: string) => `/proc/${init}/root${mnt}/${p}`;
    expect(fs.readdirSync(inside('')).sort()).toEqual(
      [...FILES.filter((f) => f !== '' && !f.includes('/')), 'nested', 'bound', 'mq', 'log'].sort(),
    );
    expect(fs.readlinkSync(inside('link'))).toBe('a');
    expect(fs.readFileSync(inside('a'), 'utf8')).toBe('hello\n');
    expect(fs.statSync(inside('hard')).ino).toBe(fs.statSync(inside('a')).ino);
    expect(fs.readFileSync(`/proc/${init}/root${mnt}/nested/x`, 'utf8')).toBe('in\n');
    expect(fs.readFileSync(`/proc/${init}/root${mnt}/bound/h`, 'utf8')).toBe('from the host\n');
    expect(fs.readlinkSync(`/proc/${sleeper}/exe`)).toBe(`${mnt}/sleep`);
    // The loop appends on from where it was, through its open file.
    const n = lines(log).length;
    waitFor('the loop to go on', () => lines(log).length >= n + 3);
    const counts = lines(log);
    expect(counts).toEqual(counts.map((_, i) => i + 1));
    // Nothing was mounted on the host.
    expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(mnt);
    expect(fs.readdirSync(mnt)).toEqual([]);
  });

  it('gets a read-only tmpfs back filled and read-only', () => {
    const dir = tmpDir('ckpt-mounts-');
    const mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
    const script = [
      'set -e',
      `M=${mnt}`,
      'mount -t tmpfs ro-data $M && echo kept > $M/f && mount -o remount,ro $M',
      `touch ${dir}/ready`,
      'exec sleep 1000',
    ].join('\n');
    const init = startContainer(dir, script);
    const mounts = mountsUnder(init, mnt);
    expect(mounts[0]).toMatch(/^\/ \S+ ro,\S* tmpfs ro-data ro/);
    const img = tmpImage();
    ckptOk(['checkpoint', String(init), '-o', img, '--kill']);
    waitFor('the container to end', () => !isAlive(init));
    ckptOk(['restart', img, '-d']);
    expect(mountsUnder(init, mnt)).toEqual(mounts);
    expect(fs.readFileSync(`/proc/${init}/root${mnt}/f`, 'utf8')).toBe('kept\n');
    expect(() => nsenter(init, ['-m'], ['sh', '-c', `echo more > ${mnt}/g`])).toThrow();
  });

  it('refuses a mount it cannot save (devpts), naming it, and leaves the container running', () => {
    const dir = tmpDir('ckpt-mounts-');
    const mnt = path.join(dir, 'pts');
    fs.mkdirSync(mnt);
    const script = `mount -t devpts -o newinstance ptsfs ${mnt} && touch ${dir}/ready && exec sleep 1000`;
    const init = startContainer(dir, script);
    const r = ckpt(['checkpoint', String(init), '-o', tmpImage(), '--kill']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(
      `the container of pid ${init} has a mount ckpt cannot save: devpts ptsfs at ${mnt};`,
    );
    expect(isAlive(init)).toBe(true);
    expect(mountsUnder(init, mnt)).toHaveLength(1);
  });
});
