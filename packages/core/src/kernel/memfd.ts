/** memfds: anonymous files with a name and seals (memfd_create(2)). */
import { errno, libc, sysError } from './libc.js';

const MFD_CLOEXEC = 1;
const MFD_ALLOW_SEALING = 2;
const F_ADD_SEALS = 1033;
const F_GET_SEALS = 1034;

/** A new memfd of this process named `name` (sealing allowed); its fd. */
export function memfdCreate(name: string): number {
  const fd = libc().memfdCreate(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) throw sysError('memfd_create', errno(), `creating memfd ${name}`);
  return fd;
}

/** The seals of file `fd` (F_SEAL_*), 0 for a file that cannot have any. */
export function getSeals(fd: number): number {
  const r = libc().fcntl(fd, F_GET_SEALS, 0);
  return Math.max(r, 0);
}

/** Add `seals` (F_SEAL_*) to memfd `fd`. */
export function addSeals(fd: number, seals: number): void {
  if (seals === 0) return;
  if (libc().fcntl(fd, F_ADD_SEALS, seals) < 0) {
    throw sysError('fcntl', errno(), `sealing a memfd (F_ADD_SEALS 0x${seals.toString(16)})`);
  }
}
