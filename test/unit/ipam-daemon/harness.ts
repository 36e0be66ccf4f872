// Test harness for the daemon: a Daemon on the in-memory provider with a manual clock, an
// optional socket server in a private temp dir, and a tiny HTTP-over-Unix-socket client.

import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { WarmPoolConfig } from '../../../src/ipam-daemon/config.ts';
import { Daemon, type DaemonOptions } from '../../../src/ipam-daemon/daemon.ts';
import { type SocketServer, startSocketServer } from '../../../src/ipam-daemon/server.ts';
import type { PodHostRoute } from '../../../src/netutils/pod-routes.ts';
import { MemoryProvider, type MemoryProviderOptions } from '../../fakes/memory-provider.ts';

export class ManualClock {
  t = Date.parse('2026-01-01T00:00:00Z');
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

export const quietLogger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

export function poolConfig(over: Partial<WarmPoolConfig> = {}): WarmPoolConfig {
  return {
    warmEniTarget: 1,
    warmIpTarget: null,
    minimumIpTarget: null,
    maxEni: null,
    cooldownMs: 30_000,
    maxPods: null,
    minGrowStep: 1,
    shrinkDelayMs: 0,
    reconcileIntervalMs: 60_000,
    allocateWaitMs: 1000,
    subnetBackoffMs: 300_000,
    ...over,
  };
}

export interface Harness {
  dir: string;
  checkpointPath: string;
  provider: MemoryProvider;
  clock: ManualClock;
  daemon: Daemon;
  server?: SocketServer;
  socketPath: string;
  /** daemon.start(); already settled unless startInBackground was asked for. */
  started: Promise<void>;
  close(): Promise<void>;
}

export async function startHarness(
  opts: {
    pool?: Partial<WarmPoolConfig>;
    provider?: MemoryProvider;
    providerOptions?: MemoryProviderOptions;
    socket?: boolean;
    dir?: string;
    daemon?: Partial<DaemonOptions>;
    realClock?: boolean;
    /** Serve the socket without waiting for daemon.start() (a daemon still starting up). */
    startInBackground?: boolean;
  } = {},
): Promise<Harness> {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'ipamd-test-')));
  const provider = opts.provider ?? new MemoryProvider(opts.providerOptions);
  const clock = new ManualClock();
  const checkpointPath = join(dir, 'state', 'checkpoint.json');
  const daemon = new Daemon({
    provider,
    pool: poolConfig(opts.pool),
    clusterName: 'test',
    podSubnetIds: null,
    podSecurityGroupIds: null,
    checkpointPath,
    logger: quietLogger,
    ...(opts.realClock ? {} : { clock }),
    ...opts.daemon,
  });
  const started = daemon.start();
  if (!opts.startInBackground) await started;
  const socketPath = join(dir, 'run', 'ipamd.sock');
  let server: SocketServer | undefined;
  if (opts.socket) server = await startSocketServer({ socketPath, daemon, logger: quietLogger });
  return {
    dir,
    checkpointPath,
    provider,
    clock,
    daemon,
    server,
    socketPath,
    started,
    async close() {
      await server?.close();
      server?.server.closeAllConnections();
      await daemon.stop(1000);
      if (!opts.dir) await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The node's wiring as an injected daemon reads it (pod host routes, veth names); tests edit it. */
export interface FakeWiring {
  routes: PodHostRoute[];
  links: string[];
  unreadable: boolean;
}

/** A harness whose daemon reads `wiring` as the node's pod host routes and host veths. */
export async function startWiredHarness(
  opts: Parameters<typeof startHarness>[0] = {},
): Promise<{ h: Harness; wiring: FakeWiring }> {
  const wiring: FakeWiring = { routes: [], links: [], unreadable: false };
  const h = await startHarness({
    ...opts,
    daemon: {
      ...opts.daemon,
      podRoutes: async () => {
        if (wiring.unreadable) throw new Error('ip: permission denied');
        return wiring.routes;
      },
      hostVeths: async () => wiring.links,
    },
  });
  return { h, wiring };
}

export interface SocketResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: unknown;
  text: string;
}

export function call(
  socketPath: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<SocketResponse> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = request(
      {
        socketPath,
        method,
        path,
        headers: {
          ...(payload !== undefined
            ? { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) }
            : {}),
          ...headers,
        },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed, text });
        });
      },
    );
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}
