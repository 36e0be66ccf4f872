// CNI input fuzzing: malformed stdin + env to the plugin, and malformed requests to the daemon's
// socket. Zero crashes allowed; every answer must be a CNI spec answer (exit 1 with
// {cniVersion, code, msg}, or exit 0 with a result when the input happened to be valid), and every
// socket answer an HTTP answer whose error body is the API's {code, message, retryable}.
//
// Exec'ing a 100 MB executable 100,000 times does not fit on 2 shared cores, so most plugin inputs
// drive the plugin's entry function in-process: runCni(env, stdin) from src/cni/run.ts, the exact
// code both the Node executable (main.ts) and the daemon (for the shim) run; a sample goes through
// the real dist/vpc-cni (the Go shim: its own parsing, then the daemon's /v1/cni or the Node
// fallback). The daemon is a real Daemon and socket server on the in-memory provider. Run inside
// a private network namespace (scripts/fuzz-cni.ts re-executes itself under `unshare --net`): an
// input that happens to be a valid ADD wires a pod into namespaces of that private world only.
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { createDaemonClient } from '../../src/cni/daemon-client.ts';
import { runCni } from '../../src/cni/run.ts';
import { FRAME_MAGIC, FRAME_VERSION, FrameReader, parseAnswer } from '../../src/ipam-daemon/frame.ts';
import { call, startHarness } from '../unit/ipam-daemon/harness.ts';

export interface FuzzOptions {
  /** Inputs to the plugin's entry function in-process. */
  inProcess: number;
  /** Of them, how many also through the real executable (dist/vpc-cni). */
  exec: number;
  /** Requests to the daemon's socket. */
  socket: number;
  seed?: number;
  /** The built shim (dist/vpc-cni); its fallback dist/vpc-cni-node sits beside it. */
  plugin: string;
  log?: (line: string) => void;
}

export interface FuzzCounts {
  inputs: number;
  specErrors: number;
  /** Exit 0 with a result: inputs the mutation left valid (VERSION, a DEL of nothing, ...). */
  successes: number;
  /** Exceptions out of the entry point, timeouts, killed processes, unparsable or non-spec output. */
  crashes: number;
  /** Error codes seen, with counts. */
  codes: Record<string, number>;
}

export interface FuzzReport {
  seed: number;
  seconds: number;
  inProcess: FuzzCounts;
  exec: FuzzCounts;
  socket: {
    requests: number;
    rawConnections: number;
    apiErrors: number;
    /** 400/408/431 without a body: the HTTP layer refused a malformed or oversized request. */
    httpRefusals: number;
    successes: number;
    crashes: number;
    statuses: Record<string, number>;
  };
  /** After the run: the daemon still answers, and no address is held twice. */
  daemonAlive: boolean;
  duplicateIps: number;
  problems: string[];
}

/** mulberry32: a small seeded PRNG, so a run can be repeated exactly. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const COMMANDS = ['ADD', 'DEL', 'CHECK', 'GC', 'STATUS', 'VERSION'];
const WEIRD_STRINGS = [
  '',
  ' ',
  '..',
  '../../etc/passwd',
  '/proc/self/ns/net',
  '/var/run/netns/../../..',
  'a'.repeat(300),
  'x'.repeat(5000),
  '\u0000',
  'eth0\n',
  '\u001b[31mred',
  'ünïcødé',
  '💥',
  'eth0;rm -rf /',
  '$(reboot)',
  '-rf',
  '1.1.0',
  '0.3.1',
  '99.0.0',
  'null',
  '{}',
  '%s%n',
];

export function mutator(random: () => number, socketPath: string, scratch: string) {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const junkString = (): string => {
    const r = random();
    if (r < 0.5) return pick(WEIRD_STRINGS);
    const n = Math.floor(random() * 40);
    let s = '';
    for (let i = 0; i < n; i++) s += String.fromCharCode(Math.floor(random() * (r < 0.8 ? 128 : 0x3000)));
    return s;
  };
  const junkValue = (depth = 0): unknown => {
    const r = random();
    if (r < 0.15) return null;
    if (r < 0.3) return pick([0, -1, 1.5, 1e308, -1e308, 2 ** 53, Number.MAX_SAFE_INTEGER, 65536, 9001]);
    if (r < 0.4) return random() < 0.5;
    if (r < 0.7 || depth > 3) return junkString();
    if (r < 0.85) return Array.from({ length: Math.floor(random() * 4) }, () => junkValue(depth + 1));
    return Object.fromEntries(
      Array.from({ length: Math.floor(random() * 4) }, () => [junkString(), junkValue(depth + 1)]),
    );
  };
  const validConfig = (): Record<string, unknown> => ({
    cniVersion: pick(['1.1.0', '1.0.0', '0.4.0']),
    name: 'vpc',
    type: 'vpc-cni',
    socketPath,
    mtu: 1500,
    logFile: join(scratch, 'cni.log'),
  });
  const FIELDS = [
    'cniVersion',
    'name',
    'type',
    'socketPath',
    'mtu',
    'mode',
    'logFile',
    'logLevel',
    'timeoutMs',
    'prevResult',
    'cni.dev/valid-attachments',
    'hostCidrs',
    'vethPrefix',
    'runtimeConfig',
    'args',
  ];
  /** One malformed config text. */
  const stdin = (): string => {
    const r = random();
    if (r < 0.08) return junkString();
    if (r < 0.12) return '';
    const conf = validConfig();
    const edits = 1 + Math.floor(random() * 3);
    for (let i = 0; i < edits; i++) {
      const field = pick(FIELDS);
      const e = random();
      if (e < 0.2) delete conf[field];
      else if (field === 'logFile' && e < 0.9)
        conf[field] = pick(['relative.log', '/etc/passwd', '/x/../y.log', '', 7]);
      else if (field === 'logFile') conf[field] = join(scratch, `${Math.floor(random() * 3)}.log`);
      else conf[field] = junkValue();
    }
    if (random() < 0.05)
      conf.prevResult = {
        cniVersion: '1.1.0',
        interfaces: junkValue(),
        ips: junkValue(),
        routes: junkValue(),
      };
    let text = JSON.stringify(conf);
    const t = random();
    if (t < 0.1)
      text = text.slice(0, Math.floor(random() * text.length)); // truncated
    else if (t < 0.15)
      text = `${text}${junkString()}`; // trailing garbage
    else if (t < 0.18) text = `${'['.repeat(5000)}`; // deep nesting
    return text;
  };
  /** One malformed CNI environment. */
  const env = (): Record<string, string> => {
    const out: Record<string, string> = {};
    const r = () => random() < 0.75;
    out.CNI_COMMAND = random() < 0.85 ? pick(COMMANDS) : junkString();
    if (r())
      out.CNI_CONTAINERID = random() < 0.5 ? `fuzz${Math.floor(random() * 1e9).toString(16)}` : junkString();
    if (r())
      out.CNI_NETNS = random() < 0.3 ? `/var/run/netns/fuzz-${Math.floor(random() * 100)}` : junkString();
    if (r()) out.CNI_IFNAME = random() < 0.5 ? 'eth0' : junkString();
    if (r()) {
      out.CNI_ARGS =
        random() < 0.5
          ? `K8S_POD_NAMESPACE=${junkString()};K8S_POD_NAME=${junkString()};K8S_POD_UID=${junkString()}`
          : junkString();
    }
    if (random() < 0.3) out.CNI_PATH = junkString();
    for (const k of Object.keys(out)) out[k] = out[k]!.replaceAll('\u0000', ''); // env values cannot hold NUL
    return out;
  };
  return { stdin, env, junkString, junkValue, pick };
}

function emptyCounts(): FuzzCounts {
  return { inputs: 0, specErrors: 0, successes: 0, crashes: 0, codes: {} };
}

/** Is this plugin output a CNI spec answer? Returns the problem, or undefined. */
export function judge(stdout: string, exitCode: number | null, counts: FuzzCounts): string | undefined {
  counts.inputs++;
  const text = stdout.trim();
  const bad = (why: string) => {
    counts.crashes++;
    return why;
  };
  if (exitCode !== 0 && exitCode !== 1) return bad(`exit ${exitCode}`);
  if (text.includes('\n')) return bad('more than one line');
  let parsed: unknown = null;
  if (text !== '') {
    try {
      parsed = JSON.parse(text);
    } catch {
      return bad(`unparsable output ${JSON.stringify(text.slice(0, 200))}`);
    }
  }
  if (exitCode === 1) {
    const e = parsed as { cniVersion?: unknown; code?: unknown; msg?: unknown } | null;
    if (!e || typeof e.cniVersion !== 'string' || !Number.isInteger(e.code) || typeof e.msg !== 'string') {
      return bad(`exit 1 without a spec error: ${text.slice(0, 200)}`);
    }
    counts.specErrors++;
    counts.codes[String(e.code)] = (counts.codes[String(e.code)] ?? 0) + 1;
    return undefined;
  }
  if (parsed !== null && (typeof parsed !== 'object' || Array.isArray(parsed)))
    return bad(`exit 0 with ${text.slice(0, 200)}`);
  counts.successes++;
  return undefined;
}

function execOnce(
  binary: string,
  env: Record<string, string>,
  stdin: string,
): Promise<{ stdout: string; code: number | null }> {
  return new Promise((resolve) => {
    const child = spawn(binary, [], {
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    child.on('error', () => {});
    const out: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ stdout: Buffer.concat(out).toString('utf8'), code });
    });
    child.stdin?.on('error', () => {});
    child.stdin?.end(stdin);
  });
}

/** Answer frames (latin1 text of the bytes) that are all 4xx errors. */
function isErrorFrame(answer: string): boolean {
  const r = new FrameReader(1 << 20);
  r.push(Buffer.from(answer, 'latin1'));
  try {
    let n = 0;
    for (let f = r.next(); f; f = r.next(), n++) {
      const { status } = parseAnswer(f);
      if (status < 400 || status > 499) return false;
    }
    return n > 0 && r.pending === 0;
  } catch {
    return false;
  }
}

/** One raw, possibly non-HTTP, exchange on the socket: resolves when the server closes or after 2 s. */
function rawExchange(socketPath: string, bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(socketPath);
    let got = '';
    const done = () => {
      s.destroy();
      resolve(got);
    };
    const t = setTimeout(done, 2000);
    s.on('data', (b: Buffer) => {
      got += b.toString('latin1');
    });
    s.on('error', () => {
      clearTimeout(t);
      done();
    });
    s.on('close', () => {
      clearTimeout(t);
      done();
    });
    s.write(bytes);
    s.end();
  });
}

export async function runFuzz(o: FuzzOptions): Promise<FuzzReport> {
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 31);
  const random = prng(seed);
  const log = o.log ?? (() => {});
  const started = Date.now();
  const h = await startHarness({ socket: true, realClock: true, pool: { warmIpTarget: 4, cooldownMs: 0 } });
  const scratch = h.dir;
  const m = mutator(random, h.socketPath, scratch);
  const report: FuzzReport = {
    seed,
    seconds: 0,
    inProcess: emptyCounts(),
    exec: emptyCounts(),
    socket: {
      requests: 0,
      rawConnections: 0,
      apiErrors: 0,
      httpRefusals: 0,
      successes: 0,
      crashes: 0,
      statuses: {},
    },
    daemonAlive: false,
    duplicateIps: 0,
    problems: [],
  };
  const problem = (p: string | undefined, input: unknown) => {
    if (p && report.problems.length < 50)
      report.problems.push(`${p} <- ${JSON.stringify(input).slice(0, 300)}`);
  };
  try {
    const client = createDaemonClient(h.socketPath, 2000);
    // ---- the plugin's entry function, in-process ----
    for (let i = 0; i < o.inProcess; i++) {
      const env = m.env();
      const stdin = m.stdin();
      let outcome: { stdout: string; exitCode: number } | undefined;
      try {
        outcome = await Promise.race([
          runCni(env, stdin, { daemon: () => client, via: 'plugin', started: performance.now() }),
          new Promise<undefined>((r) => setTimeout(() => r(undefined), 15_000).unref()),
        ]);
      } catch (e) {
        report.inProcess.inputs++;
        report.inProcess.crashes++;
        problem(`threw ${(e as Error).message}`, { env, stdin });
        continue;
      }
      if (!outcome) {
        report.inProcess.inputs++;
        report.inProcess.crashes++;
        problem('no answer within 15 s', { env, stdin });
        continue;
      }
      problem(judge(outcome.stdout, outcome.exitCode, report.inProcess), { env, stdin });
      // A sample through the real executable as well (spread over the run).
      if (
        o.exec > 0 &&
        i % Math.max(1, Math.floor(o.inProcess / o.exec)) === 0 &&
        report.exec.inputs < o.exec
      ) {
        const r = await execOnce(o.plugin, env, stdin);
        problem(judge(r.stdout, r.code, report.exec), { exec: true, env, stdin });
      }
      if ((i + 1) % 20_000 === 0) log(`fuzz: ${i + 1} plugin inputs, ${report.inProcess.crashes} crashes`);
    }
    // ---- the daemon's socket ----
    const paths = [
      '/v1/allocate',
      '/v1/release',
      '/v1/allocation',
      '/v1/allocations',
      '/v1/cni',
      '/v1/gc',
      '/v1/pool',
      '/healthz',
      '/readyz',
    ];
    const methods = ['GET', 'POST', 'POST', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'];
    const body = (path: string): string | undefined => {
      const r = random();
      if (r < 0.15) return undefined;
      if (r < 0.3) return m.junkString();
      const base: Record<string, unknown> =
        path === '/v1/cni'
          ? { env: m.env(), stdin: m.stdin() }
          : path === '/v1/gc'
            ? { validAttachments: [{ containerId: 'c1', ifName: 'eth0' }] }
            : {
                containerId: `s${Math.floor(random() * 1e6)}`,
                ifName: 'eth0',
                podNamespace: 'fuzz',
                podName: 'p',
                netns: '/var/run/netns/x',
              };
      for (let k = 0; k < 1 + Math.floor(random() * 2); k++)
        base[m.pick([...Object.keys(base), 'x', 'podUid', 'network'])] = m.junkValue();
      const text = JSON.stringify(base);
      return random() < 0.1 ? text.slice(0, Math.floor(random() * text.length)) : text;
    };
    const one = async () => {
      if (random() < 0.03) {
        report.socket.rawConnections++;
        const junk = Buffer.from(
          Array.from({ length: Math.floor(random() * 300) }, () => Math.floor(random() * 256)),
        );
        // An HTTP request line, a frame header (frame.ts: magic, version, a length), or nothing.
        const r = random();
        const prefix =
          r < 0.4
            ? Buffer.from(`${m.pick(methods)} ${m.pick(paths)} HTTP/1.1\r\n`)
            : r < 0.6
              ? Buffer.from([
                  FRAME_MAGIC,
                  FRAME_VERSION,
                  0,
                  0,
                  Math.floor(random() * 3),
                  Math.floor(random() * 256),
                ])
              : Buffer.alloc(0);
        const bytes = Buffer.concat([prefix, junk]);
        const answer = await rawExchange(h.socketPath, bytes);
        // A stream that starts as a frame is answered in frames: one 4xx error frame, or nothing.
        const framed = bytes[0] === FRAME_MAGIC;
        if (answer !== '' && !(framed ? isErrorFrame(answer) : answer.startsWith('HTTP/1.1 '))) {
          report.socket.crashes++;
          problem(`raw answer ${JSON.stringify(answer.slice(0, 100))}`, junk.toString('latin1'));
        }
        return;
      }
      const path =
        m.pick(paths) +
        (random() < 0.2
          ? `?containerId=${encodeURIComponent(m.junkString())}&ifName=${encodeURIComponent(m.junkString())}`
          : '');
      const method = m.pick(methods);
      const b = method === 'GET' ? undefined : body(path.split('?')[0]!);
      const headers: Record<string, string> =
        random() < 0.1 ? { 'Content-Type': m.pick(['text/plain', 'application/xml', '']) } : {};
      report.socket.requests++;
      let res: Awaited<ReturnType<typeof call>>;
      try {
        res = await call(h.socketPath, method, path, b, headers);
      } catch (e) {
        report.socket.crashes++;
        problem(`request failed ${(e as Error).message}`, { method, path, b });
        return;
      }
      report.socket.statuses[res.status] = (report.socket.statuses[res.status] ?? 0) + 1;
      if ([400, 408, 431].includes(res.status) && res.text === '') {
        report.socket.httpRefusals++; // the HTTP layer refused a malformed or oversized request: fine
        return;
      }
      if (res.status >= 400) {
        const e = res.body as { code?: unknown; message?: unknown; retryable?: unknown } | null;
        if (
          !e ||
          typeof e.code !== 'string' ||
          typeof e.message !== 'string' ||
          typeof e.retryable !== 'boolean' ||
          res.status >= 500
        ) {
          // Well-formed retryable refusals: not ready yet, or every IP held (allocations valid by
          // chance keep theirs; with some seeds more than the node's 27 succeed).
          const code = (e as { code?: string } | null)?.code;
          if (res.status === 503 && (code === 'NOT_READY' || code === 'NO_IP') && e?.retryable === true) {
            report.socket.apiErrors++;
            return;
          }
          report.socket.crashes++;
          problem(`status ${res.status} body ${res.text.slice(0, 200)}`, { method, path, b });
          return;
        }
        report.socket.apiErrors++;
      } else report.socket.successes++;
    };
    for (let i = 0; i < o.socket; i += 16) {
      await Promise.all(Array.from({ length: Math.min(16, o.socket - i) }, one));
      if ((i + 16) % 20_000 < 16) log(`fuzz: ${i + 16} socket requests, ${report.socket.crashes} crashes`);
    }
    const health = await call(h.socketPath, 'GET', '/healthz').catch(() => undefined);
    report.daemonAlive = health?.status === 200;
    const ips = h.daemon.list().map((a) => a.ip);
    report.duplicateIps = ips.length - new Set(ips).size;
  } finally {
    report.seconds = Math.round((Date.now() - started) / 1000);
    await h.close();
  }
  return report;
}
