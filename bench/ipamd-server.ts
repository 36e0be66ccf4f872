// The daemon as the benchmark runs it: the real Daemon, datastore, checkpoint, metrics and socket server,
// on the in-memory cloud with a warm pool (an m5.4xlarge: 8 interfaces x 29 pod IPs), so what is
// measured is the daemon itself, not a cloud. Prints {"socket":...,"pid":...} when ready.
//
//   node bench/ipamd-server.ts <dir> [in-process cycles] [in-process clients]

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getHeapSpaceStatistics } from 'node:v8';
import { Daemon } from '../src/ipam-daemon/daemon.ts';
import { DaemonMetrics } from '../src/ipam-daemon/metrics.ts';
import { apiRoutes, startSocketServer } from '../src/ipam-daemon/server.ts';
import { createLogger, logDestination } from '../src/lib/log.ts';
import { MemoryProvider } from '../test/fakes/memory-provider.ts';

const dir = process.argv[2];
if (!dir) throw new Error('usage: node bench/ipamd-server.ts <dir>');
const provider = new MemoryProvider({
  instanceType: 'm5.4xlarge',
  maxInterfaces: 8,
  ipsPerInterface: 30,
  subnets: [{ id: 'subnet-bench0001', cidr: '10.9.0.0/20' }],
});
// At the daemon's default level (LOG_LEVEL, else info), to a file as a node's runtime keeps stdout.
const logPath = join(dir, 'ipamd.log');
const logger = createLogger('vpc-ipamd', logDestination(logPath as `/${string}`));
const daemon = new Daemon({
  provider,
  pool: {
    warmEniTarget: 0,
    warmIpTarget: null,
    minimumIpTarget: 232, // the whole node warm: allocations never wait for the cloud
    maxEni: null,
    cooldownMs: 0, // 10k cycles in seconds would otherwise exhaust the pool inside IP_COOLDOWN_PERIOD
    maxPods: null,
    minGrowStep: 1,
    shrinkDelayMs: 3_600_000,
    reconcileIntervalMs: 10_000,
    allocateWaitMs: 5_000,
    subnetBackoffMs: 300_000,
  },
  clusterName: 'bench',
  podSubnetIds: null,
  podSecurityGroupIds: null,
  checkpointPath: join(dir, 'checkpoint.json'),
  logger,
  // As main.ts: the pool loop looks beside the socket for releases plugins deferred.
  socketPath: join(dir, 'run', 'ipamd.sock'),
});
await daemon.start();
await daemon.reconcileNow();
const socketPath = join(dir, 'run', 'ipamd.sock');
// Metrics as main.ts wires them (each answered request is observed), without their HTTP server.
const metrics = new DaemonMetrics();
metrics.attach(daemon);
const server = await startSocketServer({
  socketPath,
  daemon,
  logger,
  onRequest: (route, status, ms) => metrics.onRequest(route, status, ms),
});
// SIGUSR2: collect garbage (when run with --expose-gc) and report memory, to tell a leak from churn.
process.on('SIGUSR2', () => {
  (globalThis as { gc?: () => void }).gc?.();
  const m = process.memoryUsage();
  const spaces = Object.fromEntries(
    getHeapSpaceStatistics().map((s) => [s.space_name, { size: s.space_size, used: s.space_used_size }]),
  );
  let logLines = 0;
  try {
    logLines = readFileSync(logPath, 'utf8').split('\n').length - 1;
  } catch {
    // nothing logged yet
  }
  const { idle, active } = performance.eventLoopUtilization();
  process.stdout.write(
    `${JSON.stringify({ ...m, spaces, writes: daemon.checkpointWrites, logLines, loop: { idle, active } })}\n`,
  );
});
// SIGUSR1: allocate + release cycles through the API's routes in this process, no socket (the
// same validation, handlers and group commit): what the daemon costs without its transport.
// Cycles and clients from argv[3] and argv[4]; prints {"inProcess": cycles/s} when done.
const routes = apiRoutes(daemon);
let inProcessRuns = 0;
process.on('SIGUSR1', () => {
  const total = Number(process.argv[3] ?? 20_000);
  const clients = Number(process.argv[4] ?? 32);
  const tag = `inproc${++inProcessRuns}`;
  const call = (path: '/v1/allocate' | '/v1/release', text: string) =>
    routes[path]?.POST?.(async () => JSON.parse(text), new URL(`http://ipamd${path}`));
  let next = 0;
  const t0 = performance.now();
  void Promise.all(
    Array.from({ length: clients }, async () => {
      for (let n = next++; n < total; n = next++) {
        const key = `"containerId":"${tag}-${n}","ifName":"eth0"`;
        await call('/v1/allocate', `{${key},"podNamespace":"bench","podName":"p-${n}"}`);
        await call('/v1/release', `{${key}}`);
      }
    }),
  ).then(() => {
    const perSec = total / ((performance.now() - t0) / 1000);
    process.stdout.write(`${JSON.stringify({ inProcess: perSec })}\n`);
  });
});
process.on('SIGTERM', () => {
  void server.close().then(() => daemon.stop(2000).then(() => process.exit(0)));
  server.server.closeAllConnections();
});
// Ready only now: the signal handlers above are in place (a signal before them would kill us).
process.stdout.write(
  `${JSON.stringify({ socket: socketPath, pid: process.pid, pool: daemon.status().total })}\n`,
);
