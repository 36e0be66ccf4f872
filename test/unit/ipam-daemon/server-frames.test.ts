// The socket's framed transport (frame.ts) on the real server and Daemon: the same routes, answers
// and limits as HTTP/1.1 on the same socket, and garbage, truncated, oversized, slow and pipelined
// frames never crash the daemon nor cost an allocation.
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Allocation, ApiError } from '../../../src/ipam-daemon/api-types.ts';
import type { Daemon } from '../../../src/ipam-daemon/daemon.ts';
import {
  encodeFrame,
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  FrameReader,
  parseAnswer,
} from '../../../src/ipam-daemon/frame.ts';
import { type ServerOptions, startSocketServer } from '../../../src/ipam-daemon/server.ts';
import { call, type Harness, quietLogger, startHarness } from './harness.ts';

interface Exchange {
  answers: Array<{ status: number; body: unknown }>;
  /** The server closed the connection (else the wait ran out). */
  closed: boolean;
  ms: number;
}

/** Writes `data` (chunks `gapMs` apart), then collects answer frames until `want` came, the server closes, or `waitMs`. */
function exchange(
  socketPath: string,
  data: Buffer | Buffer[],
  opts: { want?: number; waitMs?: number; gapMs?: number; end?: boolean } = {},
): Promise<Exchange> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const s = connect(socketPath);
    const reader = new FrameReader(16 << 20);
    const answers: Exchange['answers'] = [];
    let bad = false;
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      s.destroy();
      resolve({ answers: bad ? [{ status: -1, body: null }] : answers, closed, ms: Date.now() - t0 });
    };
    const timer = setTimeout(() => finish(false), opts.waitMs ?? 2000);
    s.on('data', (d: Buffer) => {
      try {
        reader.push(d);
        for (let f = reader.next(); f; f = reader.next()) {
          const a = parseAnswer(f);
          answers.push({ status: a.status, body: JSON.parse(a.body) });
        }
      } catch {
        bad = true;
      }
      if (opts.want !== undefined && answers.length >= opts.want) finish(false);
    });
    s.on('close', () => finish(true));
    s.on('error', () => {});
    const chunks = Array.isArray(data) ? data : [data];
    void (async () => {
      for (const c of chunks) {
        if (s.destroyed) return;
        s.write(c);
        if (opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
      }
      if (opts.end) s.end();
    })();
  });
}

const frame = (head: string, body: unknown = undefined) =>
  encodeFrame(head, body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body));
/** A second socket server with short timeouts. */
const serveImpatient = (socketPath: string, daemon: Daemon, timeouts: Partial<ServerOptions>) =>
  startSocketServer({ socketPath, daemon, logger: quietLogger, ...timeouts });
const pod = (id: string) => ({ containerId: id, ifName: 'eth0', podNamespace: 'default', podName: id });

describe('socket API in frames', () => {
  let h: Harness;
  before(async () => {
    h = await startHarness({ socket: true, realClock: true, pool: { allocateWaitMs: 200 } });
    await h.daemon.reconcileNow();
  });
  after(async () => h.close());

  test('allocate, get, release: the same answers as HTTP, with HTTP served on the same socket meanwhile', async () => {
    const open = exchange(h.socketPath, frame('POST /v1/allocate', pod('f1')), { want: 1 });
    assert.equal((await call(h.socketPath, 'GET', '/healthz')).status, 200);
    const a = (await open).answers[0];
    assert.equal(a?.status, 200);
    const ip = (a?.body as Allocation | undefined)?.ip;
    assert.equal(h.daemon.get({ containerId: 'f1', ifName: 'eth0' })?.ip, ip);
    const viaHttp = await call(h.socketPath, 'GET', '/v1/allocation?containerId=f1&ifName=eth0');
    const got = await exchange(h.socketPath, frame('GET /v1/allocation?containerId=f1&ifName=eth0'), {
      want: 1,
    });
    assert.deepEqual(got.answers[0], { status: 200, body: viaHttp.body });
    const rel = await exchange(
      h.socketPath,
      frame('POST /v1/release', { containerId: 'f1', ifName: 'eth0' }),
      {
        want: 1,
      },
    );
    assert.deepEqual(rel.answers[0], { status: 200, body: { released: ip } });
  });

  test('errors carry the HTTP codes: 404, 405, bad JSON, validation, body over the route cap', async () => {
    const cases: Array<[Buffer, number, string]> = [
      [frame('GET /v2/nothing'), 404, 'NOT_FOUND'],
      [frame('GET /v1/allocate'), 405, 'METHOD_NOT_ALLOWED'],
      [frame('POST /v1/allocate', '{"containerId": '), 400, 'BAD_REQUEST'],
      [frame('POST /v1/allocate', ''), 400, 'BAD_REQUEST'],
      [frame('POST /v1/allocate', { containerId: '../x', ifName: 'eth0' }), 400, 'BAD_REQUEST'],
      [frame('POST /v1/allocate', { ...pod('big'), podName: 'a'.repeat(20_000) }), 413, 'PAYLOAD_TOO_LARGE'],
      [frame('POST v1/allocate', pod('nopath')), 400, 'BAD_REQUEST'],
    ];
    // One connection, all pipelined: answered in order, and an error does not end the connection.
    const r = await exchange(h.socketPath, Buffer.concat(cases.map(([f]) => f)), { want: cases.length });
    assert.equal(r.closed, false);
    assert.deepEqual(
      r.answers.map((a) => [a.status, (a.body as ApiError).code]),
      cases.map(([, s, c]) => [s, c]),
    );
    assert.equal(h.daemon.get({ containerId: 'big', ifName: 'eth0' }), null);
  });

  test('pipelined allocations on one connection are answered in order, each with its own IP', async () => {
    const ids = Array.from({ length: 5 }, (_, i) => `pipe${i}`);
    const r = await exchange(
      h.socketPath,
      Buffer.concat(ids.map((id) => frame('POST /v1/allocate', pod(id)))),
      {
        want: ids.length,
      },
    );
    const ips = r.answers.map((a) => (a.body as Allocation).ip);
    assert.deepEqual(
      ips,
      ids.map((id) => h.daemon.get({ containerId: id, ifName: 'eth0' })?.ip),
    );
    assert.equal(new Set(ips).size, ids.length);
    for (const id of ids) await h.daemon.release({ containerId: id, ifName: 'eth0' });
  });

  test('a client that half-closes after its request still gets the answer', async () => {
    const r = await exchange(h.socketPath, frame('GET /healthz'), { end: true, waitMs: 2000 });
    assert.deepEqual(r.answers, [{ status: 200, body: { ok: true } }]);
    assert.equal(r.closed, true);
  });

  test('garbage after the magic byte, a wrong version: one 400 frame, the connection closed, the daemon lives on', async () => {
    for (const bytes of [
      Buffer.from([FRAME_MAGIC, 1, 0, 0, 0, 4, 0xff, 0xfe, 0xfd, 0xfc]),
      Buffer.from([FRAME_MAGIC, 7, 0, 0, 0, 2, 10, 10]),
      Buffer.concat([frame('GET /healthz'), Buffer.from('GET / HTTP/1.1\r\n\r\n')]),
    ]) {
      const r = await exchange(h.socketPath, bytes);
      assert.equal(r.closed, true);
      assert.equal(r.answers.at(-1)?.status, 400);
    }
    assert.equal((await call(h.socketPath, 'GET', '/healthz')).status, 200);
  });

  test('a frame declaring 100 MiB: 413 from its header alone, closed before any body is sent', async () => {
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    header[0] = FRAME_MAGIC;
    header[1] = 1;
    header.writeUInt32BE(100 * 2 ** 20, 2);
    const r = await exchange(h.socketPath, header);
    assert.equal(r.closed, true);
    assert.equal(r.answers[0]?.status, 413);
    assert.equal((r.answers[0]?.body as ApiError | undefined)?.code, 'PAYLOAD_TOO_LARGE');
  });

  test('a truncated frame and a gone client cost nothing', async () => {
    const f = frame('POST /v1/allocate', pod('cut'));
    for (const at of [1, 3, FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + 5, f.length - 1]) {
      const r = await exchange(h.socketPath, f.subarray(0, at), { end: true, waitMs: 3000 });
      assert.equal(r.answers.length, 0);
      assert.ok(r.closed && r.ms < 1000, `a half-closed unfinished frame is closed at once (${r.ms} ms)`);
    }
    assert.equal(h.daemon.get({ containerId: 'cut', ifName: 'eth0' }), null);
    assert.equal((await call(h.socketPath, 'GET', '/healthz')).status, 200);
  });

  test('random byte streams after the magic byte never crash the daemon', async () => {
    let seed = 11;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let n = 0; n < 60; n++) {
      const len = Math.floor(rnd() * 40);
      const bytes = Buffer.from([FRAME_MAGIC, ...Array.from({ length: len }, () => Math.floor(rnd() * 256))]);
      if (rnd() < 0.5 && bytes.length > 1) bytes[1] = 1;
      const r = await exchange(h.socketPath, bytes, { end: true, waitMs: 500 });
      assert.ok(
        r.answers.every((a) => a.status >= 400 && a.status < 500),
        `stream ${n}: ${JSON.stringify(r.answers)}`,
      );
    }
    assert.equal((await call(h.socketPath, 'GET', '/healthz')).status, 200);
    h.daemon.list();
  });

  test('slow frames are cut off: silence inside a frame, and a frame trickling past the request timeout', async () => {
    const sock = join(h.dir, 'slow-frames', 'ipamd.sock');
    const s = await serveImpatient(sock, h.daemon, { headersTimeoutMs: 300, requestTimeoutMs: 600 });
    try {
      const f = frame('POST /v1/allocate', pod('slow'));
      const silent = await exchange(sock, f.subarray(0, 10), { waitMs: 5000 });
      assert.ok(silent.closed && silent.ms < 3000, `silent client held the connection ${silent.ms} ms`);
      const bytes = Array.from({ length: f.length }, (_, i) => f.subarray(i, i + 1));
      const trickle = await exchange(sock, bytes, { waitMs: 8000, gapMs: 100 });
      assert.ok(trickle.closed && trickle.ms < 3000, `trickling client held it ${trickle.ms} ms`);
      assert.equal(trickle.answers.length, 0);
      const idle = await exchange(sock, [], { waitMs: 5000 });
      assert.ok(idle.closed && idle.ms < 3000, 'a connection that never sends is closed');
      assert.equal(h.daemon.get({ containerId: 'slow', ifName: 'eth0' }), null);
    } finally {
      await s.close();
      s.server.closeAllConnections();
    }
  });

  test('a frame is answered only once its change is durable (the journal write held open)', async () => {
    let holding = false;
    let release: () => void = () => {};
    const held = await startHarness({
      socket: true,
      realClock: true,
      daemon: {
        beforeJournalSync: () =>
          holding
            ? new Promise<void>((r) => {
                release = r;
              })
            : undefined,
      },
    });
    try {
      await held.daemon.reconcileNow();
      holding = true;
      const pending = exchange(held.socketPath, frame('POST /v1/allocate', pod('durable')), {
        want: 1,
        waitMs: 5000,
      });
      await new Promise((r) => setTimeout(r, 300));
      let answered = false;
      void pending.then(() => {
        answered = true;
      });
      await new Promise((r) => setImmediate(r));
      assert.equal(answered, false, 'no answer while its journal record is not on disk');
      holding = false;
      release();
      const r = await pending;
      assert.equal(r.answers[0]?.status, 200);
    } finally {
      release();
      await held.close();
    }
  });

  test('an allocation waiting for the pool outlasts the idle timeout, and close() waits for its answer', async () => {
    // A slow cloud (400 ms per call) and an empty pool: the allocation waits for the pool to grow.
    const slow = await startHarness({
      realClock: true,
      providerOptions: { latencyMs: 400 },
      pool: { allocateWaitMs: 5000 },
    });
    const sock = join(slow.dir, 'busy', 'ipamd.sock');
    const s = await serveImpatient(sock, slow.daemon, { headersTimeoutMs: 100 });
    try {
      const pending = exchange(sock, frame('POST /v1/allocate', pod('wait')), { want: 1, waitMs: 8000 });
      await new Promise((r) => setTimeout(r, 150));
      let closed = false;
      const closing = s.close().then(() => {
        closed = true;
      });
      const r = await pending;
      assert.equal(r.answers[0]?.status, 200, JSON.stringify(r.answers));
      assert.ok(r.ms > 300, `answered after ${r.ms} ms: the pool did not make it wait`);
      await closing;
      assert.ok(closed);
    } finally {
      s.server.closeAllConnections();
      await slow.close();
    }
  });
});
