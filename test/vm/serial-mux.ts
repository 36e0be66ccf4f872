// TCP connections carried over one byte stream (a virtio serial port), so the VM's suites use the
// host's LocalStack without any network between guest and host: the guest has no NIC; qemu joins
// the serial port to a Unix socket on the host; both ends connect only on 127.0.0.1.
//
//   guest: 127.0.0.1:<port> --listenMux--> /dev/virtio-ports/<name> ==qemu== host Unix socket
//   host:  Unix socket --serveDemux--> 127.0.0.1:<port>
//
// Frame: u32 connection id, u8 kind (1 open, 2 data, 3 close), u32 length, payload.
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';

const OPEN = 1;
const DATA = 2;
const CLOSE = 3;
const HEADER = 9;
const MAX_CHUNK = 60_000;

export function frame(id: number, kind: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(HEADER);
  head.writeUInt32BE(id, 0);
  head.writeUInt8(kind, 4);
  head.writeUInt32BE(payload.length, 5);
  return Buffer.concat([head, payload]);
}

/** Calls onFrame for every complete frame read from the stream. */
export function readFrames(
  stream: Duplex,
  onFrame: (id: number, kind: number, payload: Buffer) => void,
): void {
  let buf: Buffer = Buffer.alloc(0);
  stream.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    while (buf.length >= HEADER) {
      const len = buf.readUInt32BE(5);
      if (buf.length < HEADER + len) break;
      onFrame(buf.readUInt32BE(0), buf.readUInt8(4), buf.subarray(HEADER, HEADER + len));
      buf = buf.subarray(HEADER + len);
    }
  });
}

/** Both ends: a table of open connections, bytes in frames out and back. */
function bridge(link: Duplex) {
  const conns = new Map<number, Socket>();
  const attach = (id: number, sock: Socket) => {
    conns.set(id, sock);
    sock.on('data', (b: Buffer) => {
      for (let i = 0; i < b.length; i += MAX_CHUNK) link.write(frame(id, DATA, b.subarray(i, i + MAX_CHUNK)));
    });
    const closed = () => {
      if (conns.delete(id)) link.write(frame(id, CLOSE));
    };
    sock.on('close', closed);
    sock.on('error', () => sock.destroy());
  };
  const onFrame = (id: number, kind: number, payload: Buffer, open?: (id: number) => Socket) => {
    if (kind === OPEN && open) attach(id, open(id));
    else if (kind === DATA) conns.get(id)?.write(payload);
    else if (kind === CLOSE) {
      const s = conns.get(id);
      conns.delete(id);
      s?.end();
    }
  };
  return { conns, attach, onFrame };
}

/** Guest side: listens on 127.0.0.1:port; each connection becomes a frame stream on link. */
export function listenMux(link: Duplex, port: number): Promise<Server> {
  const b = bridge(link);
  let next = 1;
  readFrames(link, (id, kind, payload) => b.onFrame(id, kind, payload));
  const server = createServer((sock) => {
    const id = next++;
    link.write(frame(id, OPEN));
    b.attach(id, sock);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** Host side: every connection opened on link is made to 127.0.0.1:port. */
export function serveDemux(link: Duplex, port: number): void {
  const b = bridge(link);
  readFrames(link, (id, kind, payload) => b.onFrame(id, kind, payload, () => connect(port, '127.0.0.1')));
}
