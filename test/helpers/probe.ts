// Real-packet probes for the e2e suites, run inside a netns with `ip netns exec`:
//   probe.ts serve --port P            TCP server; answers every connection with the source
//                                      address it saw ("who are you" = SNAT/source-IP checks)
//   probe.ts connect --host H --port P [--timeout MS]
//                                      prints the server's answer; exit 1 on failure
//   probe.ts echo --port P             TCP server keeping connections open; answers every line with
//                                      "<line> <source address>"
//   probe.ts hold --host H --port P    one long-lived connection: stdin lines out, answers to stdout
//   probe.ts loop --host H --port P --interval MS
//                                      a new connection every MS to a `serve` server, one line per
//                                      attempt: "ok <source>" or "fail <reason>"
// Library: startProbeServer(ns, port) / probe(ns, host, port) / holdConnection / startProbeLoop
// spawn these in a netns.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { scaled } from './slowdown.ts';

const SELF = fileURLToPath(import.meta.url);

/** `ip netns exec <ns> node probe.ts <mode> --<flag> <value>...`: this script run inside the netns. */
function inNetns(ns: string, mode: string, flags: Record<string, string | number>): string[] {
  const args = Object.entries(flags).flatMap(([k, v]) => [`--${k}`, String(v)]);
  return ['netns', 'exec', ns, process.execPath, SELF, mode, ...args];
}

export interface ProbeServer {
  ns: string;
  port: number;
  stop(): void;
}

/** Starts a server in the netns (`serve`, or `echo` for held connections); resolves once it listens. */
export function startProbeServer(
  ns: string,
  port: number,
  mode: 'serve' | 'echo' = 'serve',
): Promise<ProbeServer> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn('ip', inNetns(ns, mode, { port }), {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr?.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.stdout?.once('data', () => resolve({ ns, port, stop: () => child.kill('SIGKILL') }));
    child.once('exit', (code, signal) => {
      const e = new Error(`probe server in ${ns}:${port} exited ${code ?? signal}: ${err}`);
      reject(e);
      // after it listened: say so, or the probes that follow only see ECONNREFUSED
      if (signal !== 'SIGKILL') console.error(e.message);
    });
  });
}

/** Connects from the netns; resolves with the source address the server saw, or rejects. */
export function probe(ns: string, host: string, port: number, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'ip',
      inNetns(ns, 'connect', { host, port, timeout: timeoutMs }),
      { timeout: timeoutMs + scaled(5000) }, // the connect has timeoutMs; this covers process start
      (error, stdout, stderr) => {
        if (error)
          reject(new Error(`probe ${ns} -> ${host}:${port} failed: ${stderr.trim() || error.message}`));
        else resolve(stdout.trim());
      },
    );
  });
}

/** Retries a probe until it succeeds or the deadline passes (routes converge asynchronously). */
export async function probeEventually(
  ns: string,
  host: string,
  port: number,
  withinMs = scaled(10_000),
): Promise<string> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    try {
      return await probe(ns, host, port, 1500);
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}

export interface HeldConnection {
  /** Sends a line and resolves with the server's answer ("<line> <source address>"). */
  ask(line: string, timeoutMs?: number): Promise<string>;
  close(): void;
}

/** One TCP connection from the netns to an `echo` server, kept open until close(). */
export function holdConnection(ns: string, host: string, port: number): Promise<HeldConnection> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', inNetns(ns, 'hold', { host, port }), {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let buf = '';
    let err = '';
    const waiting: Array<(line: string) => void> = [];
    child.stderr.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.stdout.on('data', (b: Buffer) => {
      buf += b.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        waiting.shift()?.(line);
      }
    });
    child.once('exit', (code) => {
      for (const w of waiting.splice(0)) w(`closed (exit ${code}) ${err.trim()}`);
      reject(new Error(`held connection ${ns} -> ${host}:${port} exited ${code}: ${err}`));
    });
    waiting.push((first) => {
      if (first !== 'connected') return reject(new Error(`held connection: ${first}`));
      resolve({
        ask: (line, timeoutMs = 3000) =>
          new Promise((res, rej) => {
            const t = setTimeout(
              () => rej(new Error(`no answer to ${line} within ${timeoutMs} ms`)),
              timeoutMs,
            );
            waiting.push((answer) => {
              clearTimeout(t);
              res(answer);
            });
            child.stdin.write(`${line}\n`);
          }),
        close: () => child.kill('SIGKILL'),
      });
    });
  });
}

export interface ProbeLoop {
  /** Attempts so far: the source address seen, or "fail <reason>". */
  readonly results: string[];
  stop(): Promise<void>;
}

/** A new connection from the netns to a `serve` server every intervalMs until stop(). */
export function startProbeLoop(ns: string, host: string, port: number, intervalMs: number): ProbeLoop {
  const child = spawn('ip', inNetns(ns, 'loop', { host, port, interval: intervalMs }), {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const results: string[] = [];
  let buf = '';
  child.stdout.on('data', (b: Buffer) => {
    buf += b.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const l of lines) results.push(l.startsWith('ok ') ? l.slice(3) : l);
  });
  return {
    results,
    stop: () =>
      new Promise((r) => {
        if (child.exitCode !== null) return r();
        child.once('exit', () => r());
        child.kill('SIGTERM');
      }),
  };
}

function cli(): void {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      port: { type: 'string' },
      host: { type: 'string' },
      timeout: { type: 'string' },
      interval: { type: 'string' },
    },
  });
  const port = Number(values.port);
  if (positionals[0] === 'echo') {
    const server = createServer((sock) => {
      const who = sock.remoteAddress?.replace(/^::ffff:/, '');
      let buf = '';
      sock.on('data', (b) => {
        buf += b.toString();
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          sock.write(`${buf.slice(0, i)} ${who}\n`);
          buf = buf.slice(i + 1);
        }
      });
      sock.on('error', () => {});
    });
    server.listen(port, '0.0.0.0', () => process.stdout.write('listening\n'));
    return;
  }
  if (positionals[0] === 'hold') {
    const sock = connect({ host: values.host ?? '', port }, () => process.stdout.write('connected\n'));
    sock.on('data', (b) => process.stdout.write(b));
    sock.on('error', (e) => {
      process.stderr.write(`${e.message}\n`);
      process.exit(1);
    });
    sock.on('close', () => process.exit(1));
    process.stdin.on('data', (b) => sock.write(b));
    return;
  }
  if (positionals[0] === 'loop') {
    const every = Number(values.interval ?? 100);
    const once = () => {
      const started = Date.now();
      const sock = connect({ host: values.host ?? '', port, timeout: 2000 });
      let answer = '';
      let finished = false;
      const done = (line: string) => {
        if (finished) return;
        finished = true;
        sock.destroy();
        process.stdout.write(`${line}\n`);
        setTimeout(once, Math.max(0, every - (Date.now() - started)));
      };
      sock.on('data', (b) => {
        answer += b.toString();
      });
      sock.on('end', () => done(`ok ${answer.trim()}`));
      sock.on('timeout', () => done('fail timeout'));
      sock.on('error', (e) => done(`fail ${e.message}`));
    };
    once();
    process.on('SIGTERM', () => process.exit(0));
    return;
  }
  if (positionals[0] === 'serve') {
    const server = createServer((sock) => {
      // a client that gave up (its timeout, under TCG) resets the connection: without a handler
      // that error ended the server, and every later probe got ECONNREFUSED
      sock.on('error', () => {});
      sock.end(`${sock.remoteAddress?.replace(/^::ffff:/, '')}\n`);
    });
    server.listen(port, '0.0.0.0', () => process.stdout.write('listening\n'));
  } else if (positionals[0] === 'connect') {
    const timeout = Number(values.timeout ?? 3000);
    const sock = connect({ host: values.host ?? '', port, timeout });
    let answer = '';
    sock.on('data', (b) => {
      answer += b.toString();
    });
    sock.on('end', () => {
      process.stdout.write(answer);
      process.exit(0);
    });
    sock.on('timeout', () => {
      process.stderr.write('timeout\n');
      process.exit(1);
    });
    sock.on('error', (e) => {
      process.stderr.write(`${e.message}\n`);
      process.exit(1);
    });
  } else {
    process.stderr.write('usage: probe.ts serve --port P | connect --host H --port P [--timeout MS]\n');
    process.exit(2);
  }
}

if (process.argv[1] === SELF) cli();
