// Benchmark: allocate + release cycles per second over the daemon's Unix socket with a warm pool,
// latency, the daemon's CPU and disk flushes per cycle (group commit), and its RSS curve over a
// long run. Not a test: prints a report and, with --write, stores it in bench/results/ipamd-socket.md.
//
//   npx node bench/ipamd-socket.ts [--cycles 20000] [--concurrency 1,32] [--memory-cycles 100000]
//                                  [--dir /tmp] [--compare-dir /dev/shm] [--write] [--profile DIR]
//
// The checkpoint lives in --dir (a disk, as on a node); the throughput rows are repeated with it in
// --compare-dir (tmpfs: no disk flush) to tell what the disk costs from what the daemon costs. The
// disk's own latency for one durable record (what every answer waits for) is measured in the same
// run, in the same directory.
//
// Each cycle is one POST /v1/allocate + one POST /v1/release for a fresh container id, over one
// keep-alive connection per client, in the socket's frames (src/ipam-daemon/frame.ts, what the CNI
// shim and plugin speak); an HTTP/1.1 row at the highest concurrency shows the other framing side
// by side, and the "new connection" row opens one per call, as the shim and the plugin do. Every
// answered change is durable first (group commit: one disk flush per batch). The clients are
// minimal (node:net), so their own CPU (same machine) takes as little as possible from the daemon's.

import { type ChildProcess, spawn } from 'node:child_process';
import { constants, existsSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { bundleDaemon } from '../scripts/bundle-daemon.ts';
import { encodeFrame, FrameReader } from '../src/ipam-daemon/frame.ts';
import { DAEMON_NODE_FLAGS } from '../src/ipam-daemon/node-flags.ts';
import { fmt, median, percentile, tail, verdict } from './stats.ts';

const { values } = parseArgs({
  options: {
    cycles: { type: 'string', default: '20000' },
    concurrency: { type: 'string', default: '1,32' },
    'memory-cycles': { type: 'string', default: '100000' },
    // Where the checkpoint lives (the goals are judged here), and a second place for comparison.
    dir: { type: 'string', default: tmpdir() },
    'compare-dir': { type: 'string', default: existsSync('/dev/shm') ? '/dev/shm' : '' },
    write: { type: 'boolean', default: false },
    // Write a V8 CPU profile of the daemon (node --cpu-prof) into this directory; not with --write.
    profile: { type: 'string' },
  },
});
if (values.profile && values.write) throw new Error('--profile slows the daemon: not with --write');
const cycles = Number(values.cycles);
const levels = String(values.concurrency).split(',').map(Number);
const memoryCycles = Number(values['memory-cycles']);
const GOAL_CYCLES_PER_SEC = 10_000;
const GOAL_SINGLE_TAIL_MS = 5;
const GOAL_RSS_MIB = 96;
/** "Flat": RSS from the first 10% of the run to the end grows by at most this much. */
const FLAT_MIB = 4;

type Framing = 'frame' | 'http';

/** A client's connection: one request at a time. */
interface Conn {
  post(path: string, body: string): Promise<number>;
  close(): void;
}

function openConn(path: string, framing: Framing): Promise<Conn> {
  return framing === 'frame' ? FrameConn.open(path) : HttpConn.open(path);
}

/** The framed transport (src/ipam-daemon/frame.ts), as the CNI shim and the Node plugin speak it. */
class FrameConn implements Conn {
  private readonly sock: Socket;
  private readonly reader = new FrameReader(1 << 20);
  private waiting: ((status: number) => void) | null = null;
  private constructor(sock: Socket) {
    this.sock = sock;
    sock.on('close', () => this.waiting?.(Number.NaN));
    sock.on('data', (d: Buffer) => {
      this.reader.push(d);
      const f = this.reader.next();
      if (!f || !this.waiting) return;
      const w = this.waiting;
      this.waiting = null;
      w(Number(f.head));
    });
  }
  static open(path: string): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const s = connect(path, () => resolve(new FrameConn(s)));
      s.once('error', reject);
    });
  }
  post(path: string, body: string): Promise<number> {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.sock.write(encodeFrame(`POST ${path}`, body));
    });
  }
  close(): void {
    this.sock.destroy();
  }
}

/** HTTP/1.1 keep-alive, a minimal client on node:net (curl and older plugins speak HTTP). */
class HttpConn implements Conn {
  private readonly sock: Socket;
  private buf: Buffer = Buffer.alloc(0);
  private waiting: ((status: number) => void) | null = null;
  private constructor(sock: Socket) {
    this.sock = sock;
    sock.on('close', () => this.waiting?.(Number.NaN));
    sock.on('data', (d: Buffer) => {
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
      this.drain();
    });
  }
  static open(path: string): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const s = connect(path, () => resolve(new HttpConn(s)));
      s.once('error', reject);
    });
  }
  private drain(): void {
    const end = this.buf.indexOf('\r\n\r\n');
    if (end < 0 || !this.waiting) return;
    const head = this.buf.subarray(0, end).toString('latin1');
    const len = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
    if (this.buf.length < end + 4 + len) return;
    this.buf = this.buf.subarray(end + 4 + len);
    const w = this.waiting;
    this.waiting = null;
    w(Number(head.slice(9, 12)));
  }
  post(path: string, body: string): Promise<number> {
    return new Promise((resolve) => {
      this.waiting = resolve;
      this.sock.write(
        `POST ${path} HTTP/1.1\r\nHost: ipamd\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    });
  }
  close(): void {
    this.sock.destroy();
  }
}

interface Report {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  writes: { snapshots: number; journalLines: number; snapshotMs: number; journalMs: number };
  logLines: number;
  /** The daemon's event loop since its start (performance.eventLoopUtilization()), ms. */
  loop: { idle: number; active: number };
}

/** Bench servers being stopped (any other exit is reported: a daemon that died mid-run). */
const stopping = new WeakSet<ChildProcess>();

class Server {
  readonly socket: string;
  readonly pid: number;
  readonly pool: number;
  readonly child: ChildProcess;
  private constructor(child: ChildProcess, ready: { socket: string; pid: number; pool: number }) {
    this.child = child;
    this.socket = ready.socket;
    this.pid = ready.pid;
    this.pool = ready.pool;
  }
  static async start(dir: string): Promise<Server> {
    // As production runs the daemon: bundled JavaScript (scripts/bundle-daemon.ts) with the
    // daemon's V8 flags (node-flags.ts), plus --expose-gc for the report.
    const prof = values.profile ? ['--cpu-prof', '--cpu-prof-dir', values.profile] : [];
    const child = spawn(
      process.execPath,
      [
        ...DAEMON_NODE_FLAGS,
        '--expose-gc',
        ...prof,
        SERVER_BUNDLE,
        dir,
        String(cycles),
        String(Math.max(...levels)),
      ],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const ready = await new Promise<{ socket: string; pid: number; pool: number }>((resolve, reject) => {
      child.stdout?.once('data', (d) => resolve(JSON.parse(String(d))));
      child.once('exit', (c) => reject(new Error(`bench server exited ${c}`)));
    });
    child.once('exit', (code, signal) => {
      if (!stopping.has(child)) console.error(`bench server exited early: code ${code}, signal ${signal}`);
    });
    return new Server(child, ready);
  }
  /** Cycles/s of allocate + release through the API's routes inside the daemon, no socket (SIGUSR1). */
  inProcess(): Promise<number> {
    return new Promise((resolve) => {
      this.child.stdout?.once('data', (d) => resolve(JSON.parse(String(d)).inProcess));
      this.child.kill('SIGUSR1');
    });
  }
  /** Memory after a full GC and checkpoint write counts (the server answers SIGUSR2). */
  report(): Promise<Report> {
    return new Promise((resolve) => {
      this.child.stdout?.once('data', (d) => resolve(JSON.parse(String(d))));
      this.child.kill('SIGUSR2');
    });
  }
  async rssMiB(): Promise<number> {
    const s = await readFile(`/proc/${this.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(s)?.[1] ?? Number.NaN) / 1024;
  }
  /** user + system CPU seconds so far. */
  async cpuSeconds(): Promise<number> {
    const f = (await readFile(`/proc/${this.pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  }
  async stop(): Promise<void> {
    stopping.add(this.child);
    this.child.kill('SIGTERM');
    await new Promise((r) => this.child.once('exit', r));
  }
}

/**
 * Another process sleeping 1 ms at a time during a row: how late it wakes up (p99) is the machine's
 * scheduling delay then, which every hop of a request pays too.
 */
class WakeProbe {
  private readonly child: ChildProcess;
  private constructor(child: ChildProcess) {
    this.child = child;
  }
  static async start(): Promise<WakeProbe> {
    const script = `
      const late = []; let on = true;
      process.stdin.on('end', () => { on = false; }).resume();
      while (on) { const t = performance.now(); await new Promise((r) => setTimeout(r, 1)); late.push(performance.now() - t - 1); }
      late.sort((a, b) => a - b);
      process.stdout.write(String(late[Math.max(0, Math.ceil(late.length * 0.99) - 1)] ?? 'NaN'));`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    await new Promise((r) => child.once('spawn', r));
    return new WakeProbe(child);
  }
  async stop(): Promise<number> {
    let out = '';
    this.child.stdout?.on('data', (d) => {
      out += d;
    });
    this.child.stdin?.end();
    await new Promise((r) => this.child.once('exit', r));
    return Number(out);
  }
}

let tagSeq = 0;
/** `total` cycles over `concurrency` clients; latencies of allocations in ms. */
async function run(
  server: Server,
  total: number,
  concurrency: number,
  keepAlive: boolean,
  framing: Framing,
  onProgress?: (done: number) => Promise<void>,
) {
  const tag = `r${++tagSeq}`;
  const alloc: number[] = [];
  const release: number[] = [];
  let next = 0;
  let done = 0;
  let progress = Promise.resolve();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      const conn = keepAlive ? await openConn(server.socket, framing) : null;
      for (;;) {
        const n = next++;
        if (n >= total) break;
        const key = `"containerId":"${tag}-${n}","ifName":"eth0"`;
        for (const [path, body, into] of [
          ['/v1/allocate', `{${key},"podNamespace":"bench","podName":"p-${n}"}`, alloc],
          ['/v1/release', `{${key}}`, release],
        ] as const) {
          const c = conn ?? (await openConn(server.socket, framing));
          const t = performance.now();
          const status = await c.post(path, body);
          into.push(performance.now() - t);
          if (!conn) c.close();
          if (status !== 200) throw new Error(`${path} answered ${status}`);
        }
        done++;
        if (onProgress && done % 10_000 === 0) {
          const at = done;
          progress = progress.then(() => onProgress(at));
        }
      }
      conn?.close();
    }),
  );
  await progress;
  const wallMs = performance.now() - t0;
  return { cyclesPerSec: total / (wallMs / 1000), wallMs, alloc, release };
}

/** Durable writes (journal records and snapshots) between two reports, and their summed time. */
function flushesBetween(a: Report, b: Report): { flushes: number; flushMs: number } {
  const [w0, w1] = [a.writes, b.writes];
  return {
    flushes: w1.journalLines - w0.journalLines + (w1.snapshots - w0.snapshots),
    flushMs: w1.journalMs - w0.journalMs + (w1.snapshotMs - w0.snapshotMs),
  };
}

/** The share of time (%) the daemon's event loop (its main thread) was busy between two reports. */
function loopBusy(a: Report, b: Report): number {
  const active = b.loop.active - a.loop.active;
  return (100 * active) / Math.max(1e-9, active + b.loop.idle - a.loop.idle);
}

async function throughput(
  dir: string,
  judged: boolean,
): Promise<{ rows: string[]; verdicts: string[]; logLines: number; pool: number; singleWake: number }> {
  const server = await Server.start(dir);
  const where = `${filesystemOf(dir)}`;
  try {
    await run(server, 1000, 8, true, 'frame'); // warm-up (JIT, first writes), not reported
    const rows: string[] = [];
    const verdicts: string[] = [];
    const measure = async (c: number, n: number, keepAlive: boolean, framing: Framing) => {
      const [cpu0, rep0] = [await server.cpuSeconds(), await server.report()];
      const wake = await WakeProbe.start();
      const own0 = process.cpuUsage();
      const r = await run(server, n, c, keepAlive, framing);
      const own = process.cpuUsage(own0);
      const woke = await wake.stop();
      const [cpu1, rep1] = [await server.cpuSeconds(), await server.report()];
      const { flushes, flushMs } = flushesBetween(rep0, rep1);
      const at = tail(r.alloc);
      const rt = tail(r.release);
      rows.push(
        `| ${where} | ${framing === 'frame' ? 'frames' : 'HTTP/1.1'}, ${keepAlive ? 'keep-alive' : 'new connection'} | ${c} | ${n} | ${r.cyclesPerSec.toFixed(0)} | ${fmt(median(r.alloc), 2)} | ${fmt(at.value, 2)} (${at.label}) | ${fmt(median(r.release), 2)} | ${fmt(rt.value, 2)} (${rt.label}) | ${fmt(((cpu1 - cpu0) * 1e6) / n, 0)} | ${fmt((own.user + own.system) / n, 0)} | ${fmt((2 * n) / Math.max(1, flushes), 1)} | ${fmt(flushMs / Math.max(1, flushes), 2)} | ${fmt(flushMs / r.wallMs, 2)} | ${fmt(loopBusy(rep0, rep1), 0)} | ${fmt(woke, 2)} |`,
      );
      return { r, tail: at, woke };
    };
    let singleWake = Number.NaN;
    for (const c of levels) {
      const { r, tail: t, woke } = await measure(c, cycles, true, 'frame');
      if (!judged) continue;
      if (c === 1) {
        singleWake = woke;
        verdicts.push(
          verdict(
            t.value < GOAL_SINGLE_TAIL_MS,
            `one connection, allocation ${t.label} under ${GOAL_SINGLE_TAIL_MS} ms`,
            `${fmt(t.value, 2)} ms over ${r.alloc.length} allocations`,
          ),
        );
      }
      if (c === 32) {
        verdicts.push(
          verdict(
            r.cyclesPerSec >= GOAL_CYCLES_PER_SEC,
            `32 clients, at least ${GOAL_CYCLES_PER_SEC} cycles/s`,
            `${r.cyclesPerSec.toFixed(0)} cycles/s`,
          ),
        );
      }
    }
    // HTTP/1.1 beside the frames at the highest concurrency (curl and older plugins still speak
    // it), and a connection per call as the shim and the plugin make them.
    if (!values.profile) await measure(Math.max(...levels), cycles, true, 'http');
    await measure(1, Math.min(cycles, 2000), false, 'frame');
    // The same cycles inside the daemon through its API routes, no socket: what the daemon's own
    // work and the group commit cost, so the rows above tell the transport's share.
    if (!values.profile) {
      const c = Math.max(...levels);
      const [cpu0, rep0] = [await server.cpuSeconds(), await server.report()];
      const perSec = await server.inProcess();
      const [cpu1, rep1] = [await server.cpuSeconds(), await server.report()];
      const { flushes, flushMs } = flushesBetween(rep0, rep1);
      rows.push(
        `| ${where} | in-process, no socket | ${c} | ${cycles} | ${perSec.toFixed(0)} | — | — | — | — | ${fmt(((cpu1 - cpu0) * 1e6) / cycles, 0)} | — | ${fmt((2 * cycles) / Math.max(1, flushes), 1)} | ${fmt(flushMs / Math.max(1, flushes), 2)} | ${fmt(flushMs / ((cycles / perSec) * 1000), 2)} | ${fmt(loopBusy(rep0, rep1), 0)} | — |`,
      );
    }
    return { rows, verdicts, logLines: (await server.report()).logLines, pool: server.pool, singleWake };
  } finally {
    await server.stop();
  }
}

async function memory(dir: string): Promise<{ lines: string[]; verdicts: string[] }> {
  const server = await Server.start(dir);
  try {
    const curve: Array<[number, number]> = [[0, await server.rssMiB()]];
    const start = await server.report();
    const r = await run(server, memoryCycles, 32, true, 'frame', async (done) => {
      curve.push([done, await server.rssMiB()]);
    });
    const end = await server.report();
    const max = Math.max(...curve.map(([, m]) => m));
    const early = curve.find(([n]) => n >= memoryCycles / 10) ?? curve[0]!;
    const last = curve[curve.length - 1]!;
    const mib = (b: number) => fmt(b / 2 ** 20);
    return {
      lines: [
        `${memoryCycles} cycles with 32 clients (${r.cyclesPerSec.toFixed(0)} cycles/s); RSS read from /proc every 10,000 cycles, no forced GC.`,
        '',
        '| cycles | RSS MiB |',
        '|---:|---:|',
        ...curve.map(([n, m]) => `| ${n} | ${fmt(m)} |`),
        '',
        `After a full GC: RSS ${mib(start.rss)} -> ${mib(end.rss)} MiB, V8 heap used ${mib(start.heapUsed)} -> ${mib(end.heapUsed)} MiB, heap committed ${mib(start.heapTotal)} -> ${mib(end.heapTotal)} MiB, external ${mib(start.external)} -> ${mib(end.external)} MiB.`,
      ],
      verdicts: [
        verdict(max <= GOAL_RSS_MIB, `RSS at most ${GOAL_RSS_MIB} MiB`, `max ${fmt(max)} MiB`),
        verdict(
          last[1] - early[1] <= FLAT_MIB,
          `RSS flat (at most +${FLAT_MIB} MiB from ${early[0]} cycles to the end)`,
          `${fmt(early[1])} -> ${fmt(last[1])} MiB`,
        ),
      ],
    };
  } finally {
    await server.stop();
  }
}

/** "ext4 on /dev/vda (/)": the filesystem holding `dir`, from /proc/mounts (longest mount point). */
function filesystemOf(dir: string): string {
  const abs = resolve(dir);
  let best: { point: string; type: string; dev: string } | null = null;
  for (const line of MOUNTS.split('\n')) {
    const [dev, point, type] = line.split(' ');
    if (!dev || !point || !type) continue;
    const inside = abs === point || abs.startsWith(point.endsWith('/') ? point : `${point}/`);
    if (inside && (!best || point.length >= best.point.length)) best = { point, type, dev };
  }
  return best ? `${best.type} on ${best.dev} (${best.point})` : 'unknown filesystem';
}
const MOUNTS = await readFile('/proc/mounts', 'utf8').catch(() => '');

const RECORD_BYTES = 200;
/** Processes or threads a request wakes in turn, each waiting for a CPU on a loaded machine. */
const WAKE_HOPS = 4;
const LOAD_AT_START = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
const DISK_SAMPLES = 2000;
const DISK_ROUNDS = 4;
type Dist = { p50: number; p90: number; p99: number; max: number };

/** One durable record's latency on `dir`'s filesystem, the daemon's way and the old way, alternating. */
async function diskLatency(dir: string): Promise<{ dsync: Dist; append: Dist }> {
  const rec = Buffer.alloc(RECORD_BYTES, 0x61);
  rec[RECORD_BYTES - 1] = 0x0a;
  const samples = { dsync: [] as number[], append: [] as number[] };
  const per = DISK_SAMPLES / DISK_ROUNDS;
  for (let round = 0; round < DISK_ROUNDS; round++) {
    for (const kind of ['dsync', 'append'] as const) {
      const path = join(dir, `disk-probe-${kind}`);
      const fh = await open(
        path,
        constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC | (kind === 'dsync' ? constants.O_DSYNC : 0),
        0o600,
      );
      try {
        if (kind === 'dsync') await fh.write(Buffer.alloc(per * RECORD_BYTES), 0, per * RECORD_BYTES, 0);
        for (let i = 0; i < per; i++) {
          const t = performance.now();
          await fh.write(rec, 0, RECORD_BYTES, i * RECORD_BYTES);
          if (kind === 'append') await fh.datasync();
          samples[kind].push(performance.now() - t);
        }
      } finally {
        await fh.close();
        await unlink(path);
      }
    }
  }
  const dist = (xs: number[]): Dist => ({
    p50: percentile(xs, 50),
    p90: percentile(xs, 90),
    p99: percentile(xs, 99),
    max: Math.max(...xs),
  });
  return { dsync: dist(samples.dsync), append: dist(samples.append) };
}

const work = await mkdtemp(join(String(values.dir), 'ipamd-bench-'));
// Beside the sources, so the bundle resolves node_modules as they do.
const SERVER_DIR = join(import.meta.dirname, `.ipamd-server-${process.pid}`);
const SERVER_BUNDLE = await bundleDaemon(
  join(import.meta.dirname, 'ipamd-server.ts'),
  SERVER_DIR,
  'ipamd-server',
);
const compare = values['compare-dir']
  ? await mkdtemp(join(String(values['compare-dir']), 'ipamd-bench-'))
  : null;
try {
  const disk = await diskLatency(work);
  const tp = await throughput(join(work, 'tp'), true);
  const tpCompare = compare ? await throughput(join(compare, 'tp'), false) : null;
  const mem = memoryCycles > 0 ? await memory(join(work, 'mem')) : { lines: [], verdicts: [] };
  const cmd = `npx node bench/ipamd-socket.ts --cycles ${cycles} --concurrency ${levels.join(',')} --memory-cycles ${memoryCycles}${values.dir === tmpdir() ? '' : ` --dir ${values.dir}`}${compare ? '' : " --compare-dir ''"} --write`;
  const diskGoal = verdict(
    disk.dsync.p99 < GOAL_SINGLE_TAIL_MS,
    `the disk alone leaves room for it: one durable ${RECORD_BYTES}-byte record's p99 on ${filesystemOf(work)} under ${GOAL_SINGLE_TAIL_MS} ms (a single connection's allocation waits for one)`,
    `p99 ${fmt(disk.dsync.p99, 2)} ms over ${DISK_SAMPLES} records`,
  );
  const report = [
    '# ipamd socket benchmark',
    '',
    `Command: \`${cmd}\` (written by the script).`,
    `Run: ${new Date().toISOString()}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), Node ${process.version}, load average at the start ${LOAD_AT_START}, at the end ${(await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ')} (the machine is shared: wall-clock figures move with its load; CPU per cycle much less).`,
    '',
    `\`bench/ipamd-server.ts\` runs the real Daemon, datastore, checkpoint (group commit), metrics and socket server in its own process, as production runs the daemon: bundled into plain JavaScript (\`scripts/bundle-daemon.ts\`) and with the daemon's V8 flags (\`${DAEMON_NODE_FLAGS.join(' ')}\`). One cycle = allocate + release of a fresh container id. "tail" is the p99 with at least 1,000 samples, else the max. "in-process, no socket": the same cycles inside the daemon through its API routes (same validation, handlers and group commit), so the other rows tell what the socket transport adds. "clients' CPU": the benchmark's own process, all its clients together (on the same machine, sharing its CPUs with the daemon). "changes per disk flush": answered changes per durable write (group commit batches); "ms per disk flush": the daemon's own mean time per durable write (journal record or snapshot), from issuing it to its completion being handled on the daemon's main thread; "disk writes in flight": their summed time over the row's wall time (the group commit keeps up to two journal writes in flight); "daemon event loop busy": the share of the row the daemon's main thread was running (performance.eventLoopUtilization(); below 100 % the daemon waits for the disk or its clients, not for its CPU). "wake-up delay": how late another process on the machine wakes from a 1 ms sleep during the row (p99) — the wait for a CPU that every hop of a request (client, daemon, the daemon's I/O thread, client) pays on a loaded machine.`,
    '',
    '## Goals',
    '',
    ...tp.verdicts,
    ...mem.verdicts,
    '',
    'What bounds the single-connection tail:',
    '',
    diskGoal,
    verdict(
      tp.singleWake < GOAL_SINGLE_TAIL_MS / WAKE_HOPS,
      `the machine leaves room for it: during the single-connection row another process woke from a 1 ms sleep at most ${fmt(GOAL_SINGLE_TAIL_MS / WAKE_HOPS, 2)} ms late at p99 (${GOAL_SINGLE_TAIL_MS} ms over the ${WAKE_HOPS} wake-ups of a request: daemon, its I/O thread, daemon again, client)`,
      `p99 ${fmt(tp.singleWake, 2)} ms late, load average ${LOAD_AT_START} at the start of the run`,
    ),
    '',
    '## Throughput and latency',
    '',
    `Warm pool: ${tp.pool} IPs (m5.4xlarge, in-memory cloud). The goals are judged on the first filesystem (the checkpoint on a disk, as on a node)${tpCompare ? '; the same rows with the checkpoint on tmpfs (no disk flush) show what the daemon itself costs' : ''}. The daemon logs at its default level (info) to a file: ${tp.logLines} lines over the rows below.`,
    '',
    "| checkpoint on | framing, connection | clients | cycles | cycles/s | alloc p50 ms | alloc tail ms | release p50 ms | release tail ms | daemon CPU µs/cycle | clients' CPU µs/cycle | changes per disk flush | ms per disk flush (mean) | disk writes in flight (mean) | daemon event loop busy % | wake-up delay p99 ms |",
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...tp.rows,
    ...(tpCompare?.rows ?? []),
    '',
    `### The disk on its own`,
    '',
    `${DISK_SAMPLES} records of ${RECORD_BYTES} bytes each way, alternating in rounds of ${DISK_SAMPLES / DISK_ROUNDS}, in the checkpoint's directory (${filesystemOf(work)}), measured before the rows above. "O_DSYNC pwrite, preallocated" is what the daemon does per group commit; "append + fdatasync" is what it did before (each append also changes the file's size, which the filesystem must commit).`,
    '',
    '| durable write | p50 ms | p90 ms | p99 ms | max ms |',
    '|---|---:|---:|---:|---:|',
    ...(['dsync', 'append'] as const).map(
      (k) =>
        `| ${k === 'dsync' ? 'O_DSYNC pwrite, preallocated' : 'append + fdatasync'} | ${fmt(disk[k].p50, 3)} | ${fmt(disk[k].p90, 3)} | ${fmt(disk[k].p99, 3)} | ${fmt(disk[k].max, 3)} |`,
    ),
    '',
    '## Memory over a long run',
    '',
    ...mem.lines,
    '',
  ].join('\n');
  console.log(report);
  if (values.write) await writeFile(join(import.meta.dirname, 'results', 'ipamd-socket.md'), report);
} finally {
  await rm(work, { recursive: true, force: true });
  if (compare) await rm(compare, { recursive: true, force: true });
  // A profile's line numbers refer to the bundle: keep it then.
  if (values.profile) console.error(`bundle kept for the profile: ${SERVER_DIR}`);
  else await rm(SERVER_DIR, { recursive: true, force: true });
}
