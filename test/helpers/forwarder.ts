// Loopback forwarding across network namespaces. A daemon running in a node netns must reach
// LocalStack and its IMDS fake, which listen on 127.0.0.1 in the root netns. Unix sockets are not
// bound to a netns, so:
//   node netns:  127.0.0.1:<port>  --(this script, `forwarder.ts --map PORT=SOCKET ...`)-->  SOCKET
//   root netns:  SOCKET  --(serveUnixToTcp in the test process)-->  127.0.0.1:<port>
// Traffic never leaves loopback.
import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const SELF = fileURLToPath(import.meta.url);

function pipe(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  a.on('error', () => b.destroy());
  b.on('error', () => a.destroy());
  a.on('close', () => b.destroy());
  b.on('close', () => a.destroy());
}

/** Root-netns side: a Unix socket whose connections are piped to 127.0.0.1:port. */
export function serveUnixToTcp(socketPath: string, port: number): Promise<Server> {
  rmSync(socketPath, { force: true });
  const server = createServer((client) => pipe(client, connect(port, '127.0.0.1')));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve(server));
  });
}

/**
 * Node-netns side: spawns this script in the netns; resolves once every port listens. Keys are
 * ports on 127.0.0.1, or "host:port" to listen on another local address (e.g. 169.254.169.254:80).
 */
export function startNetnsForwarder(
  ns: string,
  maps: Record<number | string, string>,
): Promise<ChildProcess> {
  const args = Object.entries(maps).flatMap(([port, sock]) => ['--map', `${port}=${sock}`]);
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, SELF, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr?.on('data', (b: Buffer) => {
      err += b.toString();
    });
    child.stdout?.once('data', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`forwarder in ${ns} exited ${code}: ${err}`)));
  });
}

/**
 * The other direction: a server inside the netns (e.g. a kubelet on 127.0.0.1:PORT there) made
 * reachable from the root netns as 127.0.0.1:PORT. Spawns this script in the netns with
 * `--expose PORT=SOCKET` and listens on the root side; resolves with both.
 */
export async function exposeNetnsPort(
  ns: string,
  port: number,
  socketPath: string,
): Promise<{ child: ChildProcess; server: Server }> {
  rmSync(socketPath, { force: true });
  const child = await new Promise<ChildProcess>((resolve, reject) => {
    const c = spawn(
      'ip',
      ['netns', 'exec', ns, process.execPath, SELF, '--expose', `${port}=${socketPath}`],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let err = '';
    c.stderr?.on('data', (b: Buffer) => {
      err += b.toString();
    });
    c.stdout?.once('data', () => resolve(c));
    c.once('exit', (code) => reject(new Error(`expose forwarder in ${ns} exited ${code}: ${err}`)));
  });
  const server = createServer((client) => pipe(client, connect(socketPath)));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return { child, server };
}

function cli(): void {
  const { values } = parseArgs({
    options: { map: { type: 'string', multiple: true }, expose: { type: 'string', multiple: true } },
  });
  const maps = (values.map ?? []).map((m) => {
    const [listen = '', sock = ''] = m.split('=');
    const [host, port] = listen.includes(':') ? listen.split(':') : ['127.0.0.1', listen];
    return { host: host ?? '127.0.0.1', port: Number(port), sock };
  });
  const exposes = (values.expose ?? []).map((m) => {
    const [port = '', sock = ''] = m.split('=');
    return { port: Number(port), sock };
  });
  let pending = maps.length + exposes.length;
  const listening = () => {
    if (--pending === 0) process.stdout.write('ready\n');
  };
  for (const { host, port, sock } of maps)
    createServer((client) => pipe(client, connect(sock))).listen(port, host, listening);
  for (const { port, sock } of exposes) {
    rmSync(sock, { force: true });
    createServer((client) => pipe(client, connect(port, '127.0.0.1'))).listen(sock, listening);
  }
}

if (process.argv[1] === SELF) cli();
