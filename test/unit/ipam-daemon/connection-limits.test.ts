// Connection caps and timeouts of the daemon's two listeners: the CNI socket (server.ts) and the
// metrics endpoint (metrics.ts). Idle connections beyond the cap are closed at once, slow clients
// are cut off, and a freed slot serves again.
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { DaemonMetrics, startMetricsServer } from '../../../src/ipam-daemon/metrics.ts';
import { startSocketServer } from '../../../src/ipam-daemon/server.ts';
import { call, quietLogger, startHarness } from './harness.ts';

/** Opens a connection; resolves once connected, with a promise of its close. */
function open(target: { path: string } | { port: number; host: string }) {
  return new Promise<{ s: Socket; closed: Promise<void> }>((resolve, reject) => {
    const s = connect(target as never);
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    s.once('connect', () => resolve({ s, closed }));
    s.once('error', reject);
  });
}

const within = (p: Promise<void>, ms: number) =>
  Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);

describe('connection limits', () => {
  test('the CNI socket: connections past the cap are closed at once; a freed slot serves', async () => {
    const h = await startHarness();
    const path = join(h.dir, 'capped.sock');
    const sockets: Socket[] = [];
    const srv = await startSocketServer({
      socketPath: path,
      daemon: h.daemon,
      logger: quietLogger,
      maxConnections: 3,
    });
    try {
      const idle = await Promise.all([0, 1, 2].map(() => open({ path })));
      sockets.push(...idle.map((c) => c.s));
      await new Promise((r) => setTimeout(r, 50));
      const extra = await open({ path });
      sockets.push(extra.s);
      assert.ok(await within(extra.closed, 1000), 'the 4th connection is closed by the server');
      idle[0]?.s.destroy();
      await idle[0]?.closed;
      await new Promise((r) => setTimeout(r, 50));
      assert.equal((await call(path, 'GET', '/healthz')).status, 200, 'a freed slot serves');
    } finally {
      for (const c of sockets) c.destroy();
      const closed = srv.close();
      srv.server.closeAllConnections();
      await closed;
      await h.close();
    }
  });

  test('the metrics endpoint: a connection cap, and a client that never finishes its headers is cut off', async () => {
    const server = await startMetricsServer(new DaemonMetrics(), '127.0.0.1', 0, () => {}, {
      maxConnections: 2,
      headersTimeoutMs: 300,
      requestTimeoutMs: 300,
      connectionsCheckingIntervalMs: 50,
    });
    const target = { host: '127.0.0.1', port: (server.address() as AddressInfo).port };
    try {
      const slow = await open(target);
      slow.s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n'); // never ends its headers
      const second = await open(target);
      await new Promise((r) => setTimeout(r, 50));
      const third = await open(target);
      assert.ok(await within(third.closed, 1000), 'the 3rd connection is closed by the server');
      assert.ok(await within(slow.closed, 3000), 'the slow client is cut off');
      second.s.destroy();
    } finally {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
