// A stand-in for vpc-ipamd's socket in the shim's tests: records every request the shim sends and
// answers what the test says (relayed results, an older daemon's 404, a 500, wiring plans). For
// answers the real daemon cannot be made to give on demand; the real daemon has its own tests.
import { createServer, type Server } from 'node:http';

export interface SeenRequest {
  url: string;
  body: string;
}

export type StandInAnswer = (body: string, url: string) => { status: number; body: string };

export async function standIn(path: string, answer: StandInAnswer) {
  const seen: SeenRequest[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      seen.push({ url: req.url ?? '', body });
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
