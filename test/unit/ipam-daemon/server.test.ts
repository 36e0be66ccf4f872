import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ApiError } from '../../../src/ipam-daemon/api-types.ts';
import { startSocketServer } from '../../../src/ipam-daemon/server.ts';
import { call, type Harness, quietLogger, startHarness } from './harness.ts';

/** Send raw bytes on the socket and collect whatever comes back until the server closes or timeout. */
function raw(
  socketPath: string,
  data: string | Buffer,
  opts: { waitMs?: number; end?: boolean } = {},
): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(socketPath);
    let out = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve(out);
    }, opts.waitMs ?? 2000);
    s.on('data', (d) => {
      out += d.toString();
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    s.on('error', () => {});
    s.write(data);
    if (opts.end) s.end();
  });
}

describe('socket API hardening', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ socket: true, realClock: true, pool: { allocateWaitMs: 200 } });
    await h.daemon.reconcileNow();
  });
  after(async () => h.close());

  test('socket mode 0600 in a 0700 directory', async () => {
    const s = await stat(h.socketPath);
    assert.ok(s.isSocket());
    assert.equal(s.mode & 0o777, 0o600);
    const d = await stat(join(h.dir, 'run'));
    assert.equal(d.mode & 0o777, 0o700);
  });

  test('health and readiness', async () => {
    assert.equal((await call(h.socketPath, 'GET', '/healthz')).status, 200);
    const r = await call(h.socketPath, 'GET', '/readyz');
    assert.deepEqual(r.body, { ok: true });
  });

  const bad: Array<[string, string, string, unknown, number, string]> = [
    ['unknown path', 'GET', '/v2/nothing', undefined, 404, 'NOT_FOUND'],
    ['wrong method', 'GET', '/v1/allocate', undefined, 405, 'METHOD_NOT_ALLOWED'],
    ['wrong method 2', 'DELETE', '/v1/pool', undefined, 405, 'METHOD_NOT_ALLOWED'],
    ['not JSON', 'POST', '/v1/allocate', '{"containerId": ', 400, 'BAD_REQUEST'],
    ['JSON array', 'POST', '/v1/allocate', [1, 2], 400, 'BAD_REQUEST'],
    ['JSON null', 'POST', '/v1/allocate', 'null', 400, 'BAD_REQUEST'],
    ['missing containerId', 'POST', '/v1/allocate', { ifName: 'eth0' }, 400, 'BAD_REQUEST'],
    [
      'containerId with slash',
      'POST',
      '/v1/allocate',
      { containerId: '../../etc', ifName: 'eth0' },
      400,
      'BAD_REQUEST',
    ],
    [
      'containerId too long',
      'POST',
      '/v1/allocate',
      { containerId: 'a'.repeat(200), ifName: 'eth0' },
      400,
      'BAD_REQUEST',
    ],
    [
      'ifName too long',
      'POST',
      '/v1/allocate',
      { containerId: 'c', ifName: 'eth0123456789012' },
      400,
      'BAD_REQUEST',
    ],
    ['ifName with colon', 'POST', '/v1/allocate', { containerId: 'c', ifName: 'eth0:1' }, 400, 'BAD_REQUEST'],
    ['ifName dot-dot', 'POST', '/v1/allocate', { containerId: 'c', ifName: '..' }, 400, 'BAD_REQUEST'],
    [
      'relative netns',
      'POST',
      '/v1/allocate',
      { containerId: 'c', ifName: 'eth0', netns: 'proc/1/ns/net' },
      400,
      'BAD_REQUEST',
    ],
    [
      'netns with ..',
      'POST',
      '/v1/allocate',
      { containerId: 'c', ifName: 'eth0', netns: '/var/run/netns/../../etc' },
      400,
      'BAD_REQUEST',
    ],
    [
      'netns with NUL',
      'POST',
      '/v1/allocate',
      { containerId: 'c', ifName: 'eth0', netns: '/var/run/netns/a\u0000b' },
      400,
      'BAD_REQUEST',
    ],
    [
      'bad pod name',
      'POST',
      '/v1/allocate',
      { containerId: 'c', ifName: 'eth0', podName: 'Not_Valid' },
      400,
      'BAD_REQUEST',
    ],
    [
      'bad namespace',
      'POST',
      '/v1/allocate',
      { containerId: 'c', ifName: 'eth0', podNamespace: 'a.b' },
      400,
      'BAD_REQUEST',
    ],
    [
      'unknown field',
      'POST',
      '/v1/allocate',
      { containerId: 'c', ifName: 'eth0', ip: '10.0.0.1' },
      400,
      'BAD_REQUEST',
    ],
    ['number containerId', 'POST', '/v1/release', { containerId: 5, ifName: 'eth0' }, 400, 'BAD_REQUEST'],
    [
      'release bad ip',
      'POST',
      '/v1/release',
      { containerId: 'c', ifName: 'eth0', ip: '10.0.0' },
      400,
      'BAD_REQUEST',
    ],
    ['gc without list', 'POST', '/v1/gc', {}, 400, 'BAD_REQUEST'],
    ['gc with bad entry', 'POST', '/v1/gc', { validAttachments: [{ containerId: '' }] }, 400, 'BAD_REQUEST'],
    ['get without params', 'GET', '/v1/allocation', undefined, 400, 'BAD_REQUEST'],
    ['get unknown', 'GET', '/v1/allocation?containerId=nope&ifName=eth0', undefined, 404, 'NOT_FOUND'],
  ];
  for (const [name, method, path, body, status, code] of bad) {
    test(`${name} -> ${status} ${code}`, async () => {
      // Allocations carry the pod identity, so each case fails for its own reason.
      const withPod =
        path === '/v1/allocate' && typeof body === 'object' && body !== null && !Array.isArray(body)
          ? { podNamespace: 'default', podName: 'p', ...body }
          : body;
      const r = await call(h.socketPath, method, path, withPod);
      assert.equal(r.status, status, r.text);
      const e = r.body as ApiError;
      assert.equal(e.code, code);
      assert.ok(e.message.length > 5);
      assert.equal(e.retryable, false);
    });
  }

  test('an allocation without its pod identity -> 400 naming K8S_POD_NAMESPACE / K8S_POD_NAME', async () => {
    for (const body of [
      { containerId: 'c', ifName: 'eth0' },
      { containerId: 'c', ifName: 'eth0', podName: 'p' },
      { containerId: 'c', ifName: 'eth0', podNamespace: 'default' },
    ]) {
      const r = await call(h.socketPath, 'POST', '/v1/allocate', body);
      assert.equal(r.status, 400, r.text);
      assert.match((r.body as ApiError).message, /podNamespace and podName are required.*K8S_POD_NAME/);
    }
    assert.equal(h.daemon.get({ containerId: 'c', ifName: 'eth0' }), null, 'nothing was allocated');
  });

  test('pod uid and network are validated and recorded', async () => {
    const bad = await call(h.socketPath, 'POST', '/v1/allocate', {
      containerId: 'uid1',
      ifName: 'eth0',
      podNamespace: 'default',
      podName: 'p',
      podUid: 'not a uid',
    });
    assert.equal(bad.status, 400);
    const uid = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
    const ok = await call(h.socketPath, 'POST', '/v1/allocate', {
      containerId: 'uid1',
      ifName: 'eth0',
      podNamespace: 'default',
      podName: 'p',
      podUid: uid,
      network: 'vpc-ipam',
    });
    assert.equal(ok.status, 200, ok.text);
    const rec = h.daemon.list().find((a) => a.containerId === 'uid1');
    assert.equal(rec?.podUid, uid);
    assert.equal(rec?.network, 'vpc-ipam');
  });

  test('405 carries an Allow header', async () => {
    const r = await call(h.socketPath, 'PUT', '/v1/release', {});
    assert.equal(r.headers.allow, 'POST');
  });

  test('wrong content type -> 415', async () => {
    const r = await call(h.socketPath, 'POST', '/v1/allocate', 'containerId=c', {
      'Content-Type': 'text/plain',
    });
    assert.equal(r.status, 415);
  });

  test('oversized body (declared) -> 413', async () => {
    const big = JSON.stringify({ containerId: 'c', ifName: 'eth0', podName: 'a'.repeat(20_000) });
    const r = await call(h.socketPath, 'POST', '/v1/allocate', big);
    assert.equal(r.status, 413);
    assert.equal((r.body as ApiError).code, 'PAYLOAD_TOO_LARGE');
  });

  test('oversized body (chunked, no length) -> 413', async () => {
    const chunk = 'x'.repeat(8000);
    const req =
      'POST /v1/allocate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n' +
      `${chunk.length.toString(16)}\r\n${chunk}\r\n`.repeat(3) +
      '0\r\n\r\n';
    const out = await raw(h.socketPath, req);
    assert.match(out, /^HTTP\/1\.1 413/);
  });

  test('garbage bytes -> 400 and the daemon lives on', async () => {
    const out = await raw(h.socketPath, Buffer.from([0, 1, 2, 3, 255, 254, 13, 10, 13, 10]));
    assert.match(out, /^HTTP\/1\.1 400/);
    assert.equal((await call(h.socketPath, 'GET', '/healthz')).status, 200);
  });

  test('huge headers -> 431', async () => {
    const out = await raw(
      h.socketPath,
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    );
    assert.match(out, /^HTTP\/1\.1 431/);
  });

  /** A second server on the same daemon with short header/request timeouts, checked every 100 ms. */
  const startImpatientServer = (sock: string) =>
    startSocketServer({
      socketPath: sock,
      daemon: h.daemon,
      logger: quietLogger,
      headersTimeoutMs: 300,
      requestTimeoutMs: 400,
      connectionsCheckingIntervalMs: 100,
    });

  test('a slow client that never finishes its headers is cut off', async () => {
    const server = h.server;
    assert.ok(server);
    const sock = join(h.dir, 'slow', 'ipamd.sock');
    const s = await startImpatientServer(sock);
    try {
      const t0 = Date.now();
      const out = await raw(sock, 'POST /v1/allocate HTTP/1.1\r\nHost: x\r\n', {
        waitMs: 5000,
      });
      const took = Date.now() - t0;
      assert.ok(took < 3000, `slow client held the connection for ${took} ms`);
      assert.match(out, /^(HTTP\/1\.1 408|)/);
    } finally {
      await s.close();
      s.server.closeAllConnections();
    }
  });

  test('a slow body is cut off too', async () => {
    const sock = join(h.dir, 'slow2', 'ipamd.sock');
    const s = await startImpatientServer(sock);
    try {
      const t0 = Date.now();
      await raw(
        sock,
        'POST /v1/allocate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"cont',
        {
          waitMs: 5000,
        },
      );
      assert.ok(Date.now() - t0 < 3000);
    } finally {
      await s.close();
      s.server.closeAllConnections();
    }
  });

  test('random garbage JSON bodies never crash the daemon', async () => {
    let seed = 7;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const values: unknown[] = [
      null,
      true,
      0,
      -1,
      1e308,
      '',
      'eth0',
      '\u0000',
      'a'.repeat(300),
      [],
      {},
      [null],
      { a: 1 },
    ];
    const pick = () => values[Math.floor(rnd() * values.length)];
    const paths = ['/v1/allocate', '/v1/release', '/v1/gc'];
    for (let n = 0; n < 150; n++) {
      const body: Record<string, unknown> = {};
      for (const f of [
        'containerId',
        'ifName',
        'netns',
        'podName',
        'podNamespace',
        'validAttachments',
        '__proto__',
      ]) {
        if (rnd() < 0.5) body[f] = pick();
      }
      const r = await call(h.socketPath, 'POST', paths[n % 3] as string, JSON.stringify(body));
      assert.ok(r.status < 500 || r.status === 503, `status ${r.status}: ${r.text}`);
    }
    assert.equal((await call(h.socketPath, 'GET', '/healthz')).status, 200);
    h.daemon.list(); // still consistent
  });

  test('empty pool answers 503 NO_IP, retryable, with a reason', async () => {
    const ok: string[] = [];
    for (let n = 0; n < 40; n++) {
      const r = await call(h.socketPath, 'POST', '/v1/allocate', {
        containerId: `fill${n}`,
        ifName: 'eth0',
        podNamespace: 'default',
        podName: `fill${n}`,
      });
      if (r.status === 200) ok.push(n.toString());
      else {
        assert.equal(r.status, 503);
        const e = r.body as ApiError;
        assert.equal(e.code, 'NO_IP');
        assert.equal(e.retryable, true);
        assert.equal(e.reason, 'instance-limit');
        assert.equal(r.headers['retry-after'], '2');
        break;
      }
    }
    assert.equal(ok.length, 27 - h.daemon.list().filter((a) => !a.containerId.startsWith('fill')).length);
  });
});

describe('socket path safety', () => {
  test('refuses a path that exists and is not a socket', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ipamd-sock-'));
    const h = await startHarness({ dir });
    try {
      const path = join(dir, 'file.sock');
      await writeFile(path, 'not a socket');
      await assert.rejects(
        startSocketServer({ socketPath: path, daemon: h.daemon, logger: quietLogger }),
        /exists and is not a socket/,
      );
    } finally {
      await h.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('refuses a socket another daemon is serving; replaces a stale one', async () => {
    const h = await startHarness({ socket: true });
    try {
      await assert.rejects(
        startSocketServer({ socketPath: h.socketPath, daemon: h.daemon, logger: quietLogger }),
        /in use by another running daemon/,
      );
      await h.server?.close();
      // A stale socket file left by a daemon killed with SIGKILL (nobody unlinked it) is replaced.
      const stalePath = join(h.dir, 'run', 'stale.sock');
      const child = spawn(
        process.execPath,
        [
          '-e',
          `require('node:net').createServer().listen(${JSON.stringify(stalePath)}, () => console.log('up'))`,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      await new Promise<void>((r) => child.stdout?.once('data', () => r()));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      assert.ok((await stat(stalePath)).isSocket(), 'the killed listener left its socket file');
      const s2 = await startSocketServer({ socketPath: stalePath, daemon: h.daemon, logger: quietLogger });
      await s2.close();
    } finally {
      await h.close();
    }
  });

  test('refuses a group/world-writable socket directory', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ipamd-sock-'));
    const h = await startHarness({ dir });
    try {
      const open = join(dir, 'open');
      await mkdir(open, { mode: 0o777 });
      const { chmod } = await import('node:fs/promises');
      await chmod(open, 0o777);
      await assert.rejects(
        startSocketServer({ socketPath: join(open, 'x.sock'), daemon: h.daemon, logger: quietLogger }),
        /writable by group or others/,
      );
    } finally {
      await h.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
