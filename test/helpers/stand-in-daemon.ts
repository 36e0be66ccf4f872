// A stand-in for vpc-ipamd's socket in the shim's tests: records every request the shim sends and
// answers what the test says (relayed results, an older daemon's 404, a 500, wiring plans). For
// answers the real daemon cannot be made to give on demand; the real daemon has its own tests.
// It speaks HTTP/1.1 only (a daemon older than the socket's frames: the shim retries in HTTP) or,
// with `framing: 'frames'`, frames only (src/ipam-daemon/frame.ts; anything else is cut off).
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { encodeFrame, FrameReader } from '../../src/ipam-daemon/frame.ts';

export interface SeenRequest {
  url: string;
  body: string;
  framing: 'http' | 'frames';
}

export type StandInAnswer = (body: string, url: string) => { status: number; body: string };

export async function standIn(
  path: string,
  answer: StandInAnswer,
  opts: { framing?: 'http' | 'frames' } = {},
) {
  const seen: SeenRequest[] = [];
  const server: Server | NetServer =
    opts.framing === 'frames'
      ? createNetServer((sock) => {
          const reader = new FrameReader(16 << 20);
          sock.on('error', () => sock.destroy());
          sock.on('data', (d: Buffer) => {
            try {
              reader.push(d);
              for (let f = reader.next(); f; f = reader.next()) {
                const [method, url = ''] = f.head.split(' ');
                const body = f.body.toString('utf8');
                seen.push({ url, body, framing: 'frames' });
                const a = method === 'POST' ? answer(body, url) : { status: 405, body: '{}' };
                sock.write(encodeFrame(String(a.status), a.body));
              }
            } catch {
              sock.destroy();
            }
          });
        })
      : createServer((req, res) => {
          const chunks: Buffer[] = [];
          req.on('data', (c: Buffer) => chunks.push(c));
          req.on('end', () => {
            const body = Buffer.concat(chunks).toString('utf8');
            seen.push({ url: req.url ?? '', body, framing: 'http' });
            const a = answer(body, req.url ?? '');
            res.writeHead(a.status, {
              'Content-Type': 'application/json',
              'Content-Length': Buffer.byteLength(a.body),
            });
            res.end(a.body);
          });
        });
  await new Promise<void>((r) => server.listen(path, r));
  return { seen, close: () => new Promise<void>((r) => server.close(() => r())) };
}
