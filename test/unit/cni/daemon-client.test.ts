// The plugin's socket client: frames to a daemon that speaks them, and the same calls to an older,
// HTTP/1.1-only daemon (a real node:http server on a Unix socket) through its retry in HTTP.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createDaemonClient, parseHttpResponse } from '../../../src/cni/daemon-client.ts';
import { CniError } from '../../../src/cni/spec.ts';
import { standIn } from '../../helpers/stand-in-daemon.ts';

const code = (n: number) => (e: unknown) => e instanceof CniError && e.code === n;

describe('daemon client', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cni-client-'));
  const socketPath = join(dir, 'ipamd.sock');
  const seen: { method?: string; url?: string; body: string }[] = [];
  let server: Server;

  before(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString();
      });
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, body });
        const json = (status: number, obj: unknown, chunked = false) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          if (chunked) {
            const text = JSON.stringify(obj);
            res.write(text.slice(0, 5)); // two writes: node sends a chunked body
            res.end(text.slice(5));
          } else res.end(JSON.stringify(obj));
        };
        if (req.url === '/v1/allocate') {
          const { containerId } = JSON.parse(body) as { containerId: string };
          if (containerId === 'full') {
            json(503, { code: 'NO_IP', message: 'subnet is full', retryable: true, reason: 'subnet-full' });
          } else if (containerId === 'bad')
            json(400, { code: 'BAD_REQUEST', message: 'nope', retryable: false });
          else if (containerId === 'slow')
            setTimeout(() => json(200, { ip: '10.0.0.9', routeTable: 0 }), 300);
          else json(200, { containerId, ifName: 'eth0', ip: '10.0.0.5', routeTable: 0 }, true);
        } else if (req.url?.startsWith('/v1/allocation?'))
          json(404, { code: 'NOT_FOUND', message: 'none', retryable: false });
        else if (req.url === '/readyz') json(503, { ok: false, reason: 'starting' });
        else json(200, { released: '10.0.0.5' });
      });
    });
    await new Promise<void>((r) => server.listen(socketPath, r));
  });

  after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('allocate: JSON body out, (chunked) JSON answer in', async () => {
    const a = await createDaemonClient(socketPath, 1000).allocate({ containerId: 'c1', ifName: 'eth0' });
    assert.equal(a.ip, '10.0.0.5');
    assert.deepEqual(JSON.parse(seen.at(-1)!.body), { containerId: 'c1', ifName: 'eth0' });
    assert.equal(seen.at(-1)!.method, 'POST');
  });

  test('frames to a daemon that speaks them: one request each, answers and errors as over HTTP', async () => {
    const sock = join(dir, 'frames.sock');
    const d = await standIn(
      sock,
      (body, url) =>
        url === '/v1/allocate' && (JSON.parse(body) as { containerId: string }).containerId === 'full'
          ? {
              status: 503,
              body: '{"code":"NO_IP","message":"subnet is full","retryable":true,"reason":"subnet-full"}',
            }
          : { status: 200, body: '{"ip":"10.0.0.7","routeTable":0}' },
      { framing: 'frames' },
    );
    try {
      const c = createDaemonClient(sock, 1000);
      assert.equal((await c.allocate({ containerId: 'c1', ifName: 'eth0' })).ip, '10.0.0.7');
      await assert.rejects(
        c.allocate({ containerId: 'full', ifName: 'eth0' }),
        (e: unknown) => code(11)(e) && /subnet-full/.test(String(e)),
      );
      assert.deepEqual(
        d.seen.map((s) => [s.framing, s.url, JSON.parse(s.body).containerId]),
        [
          ['frames', '/v1/allocate', 'c1'],
          ['frames', '/v1/allocate', 'full'],
        ],
      );
    } finally {
      await d.close();
    }
  });

  test('retryable daemon errors are CNI 11 with the reason; others 100', async () => {
    const c = createDaemonClient(socketPath, 1000);
    await assert.rejects(
      c.allocate({ containerId: 'full', ifName: 'eth0' }),
      (e: unknown) => code(11)(e) && /subnet-full/.test(String(e)),
    );
    await assert.rejects(c.allocate({ containerId: 'bad', ifName: 'eth0' }), code(100));
  });

  test('404 allocation is null; query string is encoded; readiness reason', async () => {
    const c = createDaemonClient(socketPath, 1000);
    assert.equal(await c.getAllocation({ containerId: 'a b', ifName: 'eth0' }), null);
    assert.equal(seen.at(-1)!.url, '/v1/allocation?containerId=a+b&ifName=eth0');
    assert.equal(await c.readiness(), 'starting');
    assert.deepEqual(await c.release({ containerId: 'x', ifName: 'eth0' }), { released: '10.0.0.5' });
  });

  test('no daemon or a slow one: try again later (11)', async () => {
    await assert.rejects(createDaemonClient(join(dir, 'missing.sock'), 1000).readiness(), code(11));
    await assert.rejects(
      createDaemonClient(socketPath, 100).allocate({ containerId: 'slow', ifName: 'eth0' }),
      code(11),
    );
  });

  test('a slow answer within the timeout arrives (daemon waiting for the pool to grow)', async () => {
    const a = await createDaemonClient(socketPath, 2000).allocate({ containerId: 'slow', ifName: 'eth0' });
    assert.equal(a.ip, '10.0.0.9');
  });

  test('response parser: content-length, chunked, garbage', () => {
    const r = parseHttpResponse(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}xx'));
    assert.deepEqual(r, { status: 200, body: '{}' });
    const c = parseHttpResponse(
      Buffer.from('HTTP/1.1 503 X\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n'),
    );
    assert.deepEqual(c, { status: 503, body: 'abcde' });
    assert.throws(() => parseHttpResponse(Buffer.from('garbage')), /incomplete/);
    assert.throws(() => parseHttpResponse(Buffer.from('SMTP 1\r\n\r\n')), /status line/);
  });
});
