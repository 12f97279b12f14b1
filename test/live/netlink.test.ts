/**
 * Netlink sockets bound to a port (dnsmasq, udev, NetworkManager): a
 * python3 program in a container keeps a NETLINK_ROUTE socket bound to its
 * port id with groups joined (link and IPv4 address changes), an option
 * set and a large receive buffer. After `--kill` and restart the socket
 * has the same port id, groups, option and buffer, and works: a link dump
 * asked for on it is answered, to its port.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ckptOk } from '../support/ckpt.js';
import { isAlive } from '../support/fixtures.js';
import { cleanupAfterEach } from '../support/live.js';
import { waitFor } from '../support/procs.js';

const { leftovers, tmpDir, tmpImage } = cleanupAfterEach();

/** Writes DIR/before (its socket's state), waits for DIR/go, then DIR/after: the state again and a link dump's answer. */
const PROGRAM = `
import json, os, socket, struct, sys, time
d = sys.argv[1]
SOL_NETLINK, NETLINK_NO_ENOBUFS, NETLINK_LIST_MEMBERSHIPS = 270, 5, 9
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.setsockopt(socket.SOL_SOCKET, 33, 1 << 20)  # SO_RCVBUFFORCE
s.bind((0, 0x1 | 0x10))  # RTMGRP_LINK | RTMGRP_IPV4_IFADDR
s.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
def state():
    groups = s.getsockopt(SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, 8)
    return {'portid': s.getsockname()[0], 'groups': struct.unpack('II', groups)[0],
            'noEnobufs': s.getsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS),
            'rcvbuf': s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)}
json.dump(state(), open(d + '/before.tmp', 'w')); os.rename(d + '/before.tmp', d + '/before')
while not os.path.exists(d + '/go'): time.sleep(0.05)
out = state()
# RTM_GETLINK dump: nlmsghdr + ifinfomsg.
s.send(struct.pack('=IHHII', 32, 18, 0x301, 7, 0) + bytes(16))
names, done, to = [], False, set()
while not done:
    data = s.recv(1 << 16)
    at = 0
    while at + 16 <= len(data):
        length, kind, flags, seq, pid = struct.unpack_from('=IHHII', data, at)
        to.add(pid)
        if kind == 3: done = True  # NLMSG_DONE
        if kind == 16 and b'lo\\0' in data[at:at + length]: names.append('lo')
        at += (length + 3) & ~3
out['dump'] = {'lo': 'lo' in names, 'to': sorted(to)}
json.dump(out, open(d + '/after.tmp', 'w')); os.rename(d + '/after.tmp', d + '/after')
time.sleep(100)
`;

describe('a netlink socket bound to a port', () => {
  it('comes back with its port id, groups, options and buffer, and the kernel answers it', () => {
    const dir = tmpDir('ckpt-netlink-');
    fs.writeFileSync(path.join(dir, 'prog.py'), PROGRAM);
    const pid = Number(ckptOk(['run', '--', 'python3', path.join(dir, 'prog.py'), dir]).trim());
    leftovers.push(pid);
    waitFor('the socket bound', () => fs.existsSync(path.join(dir, 'before')), 10_000);
    const before = JSON.parse(fs.readFileSync(path.join(dir, 'before'), 'utf8'));
    expect(before.groups).toBe(0x11);
    expect(before.noEnobufs).toBe(1);
    const img = tmpImage();
    ckptOk(['checkpoint', String(pid), '-o', img, '--kill']);
    waitFor('the program gone', () => !isAlive(pid));
    expect(Number(ckptOk(['restart', img, '-d']).trim())).toBe(pid);
    fs.writeFileSync(path.join(dir, 'go'), '');
    waitFor('the dump answered', () => fs.existsSync(path.join(dir, 'after')), 10_000);
    const after = JSON.parse(fs.readFileSync(path.join(dir, 'after'), 'utf8'));
    expect(after).toEqual({ ...before, dump: { lo: true, to: [before.portid] } });
  });
});
