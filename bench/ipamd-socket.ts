// Benchmark: allocations + releases per second over the daemon's Unix socket with a warm pool,
// p50/p99 latency, and the daemon's RSS after 10k cycles. Not a test: prints a table.
//
//   npx node bench/ipamd-socket.ts [--cycles 10000] [--concurrency 1,8,32] [--dir /dev/shm]
//
// Each cycle is one POST /v1/allocate + one POST /v1/release for a fresh container id, over a
// keep-alive connection per worker, as the CNI plugin would (it opens one connection per call;
// see the "new connection" row). Every answered allocation is on disk (checkpoint fsync) first.

import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    cycles: { type: 'string', default: '10000' },
    concurrency: { type: 'string', default: '1,8,32' },
    // Where the checkpoint lives: compare a disk with /dev/shm to see what fsync costs.
    dir: { type: 'string', default: tmpdir() },
  },
});
const cycles = Number(values.cycles);
const levels = String(values.concurrency).split(',').map(Number);

function post(socketPath: string, path: string, body: unknown, agent: Agent | false): Promise<number> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const req = request(
      {
        socketPath,
        path,
        method: 'POST',
        agent,
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) },
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          res.statusCode === 200 ? resolve(res.statusCode) : reject(new Error(`HTTP ${res.statusCode}`)),
        );
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

async function rssKiB(pid: number): Promise<number> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? Number.NaN);
}

/** RSS and V8 heap of the daemon after a full GC (it answers SIGUSR2 with one JSON line). */
function memoryAfterGc(child: ReturnType<typeof spawn>): Promise<{ rss: number; heapUsed: number }> {
  return new Promise((resolve) => {
    child.stdout?.once('data', (d) => resolve(JSON.parse(String(d))));
    child.kill('SIGUSR2');
  });
}

async function run(socketPath: string, total: number, concurrency: number, keepAlive: boolean, tag: string) {
  const alloc: number[] = [];
  const rel: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      const agent = keepAlive ? new Agent({ keepAlive: true, maxSockets: 1 }) : false;
      for (;;) {
        const n = next++;
        if (n >= total) break;
        const key = { containerId: `${tag}-${n}`, ifName: 'eth0' };
        let t = performance.now();
        await post(socketPath, '/v1/allocate', { ...key, podNamespace: 'bench', podName: `p-${n}` }, agent);
        alloc.push(performance.now() - t);
        t = performance.now();
        await post(socketPath, '/v1/release', key, agent);
        rel.push(performance.now() - t);
      }
      if (agent) agent.destroy();
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  alloc.sort((a, b) => a - b);
  rel.sort((a, b) => a - b);
  return {
    cyclesPerSec: total / secs,
    allocP50: pct(alloc, 50),
    allocP99: pct(alloc, 99),
    relP50: pct(rel, 50),
    relP99: pct(rel, 99),
  };
}

const dir = await mkdtemp(join(String(values.dir), 'ipamd-bench-'));
const server = spawn(process.execPath, ['--expose-gc', join(import.meta.dirname, 'ipamd-server.ts'), dir], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const ready = await new Promise<{ socket: string; pid: number; pool: number }>((resolve, reject) => {
  server.stdout.once('data', (d) => resolve(JSON.parse(String(d))));
  server.once('exit', (c) => reject(new Error(`bench server exited ${c}`)));
});
try {
  const rssStart = await rssKiB(ready.pid);
  const memStart = await memoryAfterGc(server);
  const rows: string[] = [];
  const fmt = (n: number) => n.toFixed(2);
  // Warm-up (JIT, first fsyncs), not reported.
  await run(ready.socket, 500, 4, true, 'warm');
  for (const c of levels) {
    const r = await run(ready.socket, cycles, c, true, `c${c}`);
    rows.push(
      `| keep-alive | ${c} | ${cycles} | ${r.cyclesPerSec.toFixed(0)} | ${fmt(r.allocP50)} | ${fmt(r.allocP99)} | ${fmt(r.relP50)} | ${fmt(r.relP99)} |`,
    );
  }
  const fresh = await run(ready.socket, Math.min(cycles, 2000), 1, false, 'fresh');
  rows.push(
    `| new connection | 1 | ${Math.min(cycles, 2000)} | ${fresh.cyclesPerSec.toFixed(0)} | ${fmt(fresh.allocP50)} | ${fmt(fresh.allocP99)} | ${fmt(fresh.relP50)} | ${fmt(fresh.relP99)} |`,
  );
  const rssEnd = await rssKiB(ready.pid);
  const memEnd = await memoryAfterGc(server);
  const totalCycles = 500 + cycles * levels.length + Math.min(cycles, 2000);
  console.log(`warm pool: ${ready.pool} IPs (m5.4xlarge, in-memory cloud); checkpoint fsync on every change`);
  console.log(
    '| connection | concurrency | cycles | cycles/s | alloc p50 ms | alloc p99 ms | release p50 ms | release p99 ms |',
  );
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
  console.log(
    `daemon RSS: ${(rssStart / 1024).toFixed(1)} MiB at start, ${(rssEnd / 1024).toFixed(1)} MiB after ${totalCycles} cycles`,
  );
  const mib = (b: number) => (b / 1024 / 1024).toFixed(1);
  console.log(
    `after a full GC: RSS ${mib(memStart.rss)} -> ${mib(memEnd.rss)} MiB, V8 heap used ${mib(memStart.heapUsed)} -> ${mib(memEnd.heapUsed)} MiB`,
  );
} finally {
  server.kill('SIGTERM');
  await new Promise((r) => server.once('exit', r));
  await rm(dir, { recursive: true, force: true });
}
