// Real-packet probes for the e2e suites, run inside a netns with `ip netns exec`:
//   probe.ts serve --port P            TCP server; answers every connection with the source
//                                      address it saw ("who are you" = SNAT/source-IP checks)
//   probe.ts connect --host H --port P [--timeout MS]
//                                      prints the server's answer; exit 1 on failure
// Library: startProbeServer(ns, port) / probe(ns, host, port) spawn these in a netns.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const SELF = fileURLToPath(import.meta.url);

export interface ProbeServer {
  ns: string;
  port: number;
  stop(): void;
}

/** Starts a server in the netns; resolves once it listens. */
export function startProbeServer(ns: string, port: number): Promise<ProbeServer> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(
      'ip',
      ['netns', 'exec', ns, process.execPath, SELF, 'serve', '--port', String(port)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let err = '';
    child.stderr?.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.stdout?.once('data', () => resolve({ ns, port, stop: () => child.kill('SIGKILL') }));
    child.once('exit', (code) => reject(new Error(`probe server in ${ns} exited ${code}: ${err}`)));
  });
}

/** Connects from the netns; resolves with the source address the server saw, or rejects. */
export function probe(ns: string, host: string, port: number, timeoutMs = 3000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'ip',
      [
        'netns',
        'exec',
        ns,
        process.execPath,
        SELF,
        'connect',
        '--host',
        host,
        '--port',
        String(port),
        '--timeout',
        String(timeoutMs),
      ],
      { timeout: timeoutMs + 5000 },
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
  withinMs = 10_000,
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

function cli(): void {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { port: { type: 'string' }, host: { type: 'string' }, timeout: { type: 'string' } },
  });
  const port = Number(values.port);
  if (positionals[0] === 'serve') {
    const server = createServer((sock) => {
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
