import { readlinkSync } from 'node:fs';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  decodeInetAddress,
  findInetSocket,
  findUnixSocket,
  SocketTables,
  tcpConnections,
} from '../../src/socket-info.js';

// Lines in the layout of /proc/net/tcp, tcp6 and unix (Linux 6.18).
const TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4690 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4387549 1 0000000000000000 100 0 0 10 0
   1: 0100007F:9C40 0100007F:0050 01 00000000:00000000 00:00000000 00000000  1000        0 4387600 1 0000000000000000 20 4 30 10 -1
`;
const TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
`;
const UNIX = `Num       RefCount Protocol Flags    Type St Inode Path
00000000437007bc: 00000002 00000000 00010000 0001 01 4422241 /run/app.sock
0000000001a09bfe: 00000003 00000000 00000000 0001 03 4419898
000000006a0f1325: 00000002 00000000 00000000 0002 01 4416363 @abstract
`;

describe('socket descriptions from /proc/net', () => {
  it('decodes IPv4 and IPv6 addresses as the kernel prints them', () => {
    expect(decodeInetAddress('0100007F:4690')).toBe('127.0.0.1:18064');
    expect(decodeInetAddress('00000000000000000000000001000000:1F90')).toBe('[::1]:8080');
    expect(decodeInetAddress('00000000000000000000000000000000:0000')).toBe('[::]:0');
  });

  it('finds TCP sockets by inode: listening, connected, absent', () => {
    expect(findInetSocket(TCP, 4387549, 'TCP')).toBe('TCP socket listening on 127.0.0.1:18064');
    expect(findInetSocket(TCP, 4387600, 'TCP')).toBe(
      'TCP socket 127.0.0.1:40000 -> 127.0.0.1:80 (established)',
    );
    expect(findInetSocket(TCP6, 777, 'TCP')).toBe('TCP socket listening on [::1]:8080');
    expect(findInetSocket(TCP, 1, 'TCP')).toBeUndefined();
  });

  it('finds unix sockets: listening with a path, unnamed, datagram', () => {
    expect(findUnixSocket(UNIX, 4422241)).toBe('unix stream socket listening at /run/app.sock');
    expect(findUnixSocket(UNIX, 4419898)).toBe('unix stream socket (unnamed)');
    expect(findUnixSocket(UNIX, 4416363)).toBe('unix datagram socket at @abstract');
    expect(findUnixSocket(UNIX, 5)).toBeUndefined();
  });

  it("answers about this process's own sockets from one reading of the tables", async () => {
    const server = net.createServer((c) => c.end());
    await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
    const port = (server.address() as net.AddressInfo).port;
    const client = net.connect(port, '127.0.0.1');
    await new Promise<void>((ok) => client.on('connect', ok));
    try {
      // The listener's inode, through its fd.
      const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
      const inode = Number(/socket:\[(\d+)\]/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1]);
      const tables = new SocketTables(process.pid);
      expect(tables.describe(inode)).toBe(`TCP socket listening on 127.0.0.1:${port}`);
      expect(tables.entry(inode)).toMatchObject({ proto: 'TCP', state: 10, connected: false });
      expect(tables.describe(1)).toBe('socket');
      expect(tables.entry(1)).toBeUndefined();
      const local = `127.0.0.1:${client.localPort}`;
      expect(tcpConnections(process.pid).get(`${local} 127.0.0.1:${port}`)).toBe('established');
    } finally {
      client.destroy();
      server.close();
    }
  });
});
