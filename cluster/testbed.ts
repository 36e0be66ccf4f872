// The cluster test bed: a real Kubernetes cluster on one machine with vpc-ipam Helm-installed,
// as users run it. This program is the supervisor: it brings everything up, stays in the
// foreground keeping the local VPC in step with LocalStack, answers a small control socket, and
// tears everything down on SIGTERM/SIGINT. cluster/up.sh starts it in the background and waits
// for .run/cluster/state.json; cluster/down.sh stops it.
//
//   LocalStack (already running)  <- seeded: a VPC, an m5.large and an m5.4xlarge
//   local VPC (test/helpers/local-vpc.ts): node netns per instance, fabric, internet, on-prem
//   control-plane netns (198.18.1.2, reached through the fabric like a VPC endpoint): the API
//     server's advertised address and LocalStack's "EC2 endpoint", both forwarded to loopback
//   etcd + kube-apiserver + kube-controller-manager + kube-scheduler on 127.0.0.1 (root netns)
//   per node (cluster/node.ts): containerd, kubelet, kube-proxy in the node's netns and its own
//     mount namespace; IMDS at 169.254.169.254 inside the node from aws/amazon-ec2-metadata-mock
//     (test/helpers/ec2-metadata-mock.ts: one mock per ENI MAC, configs follow LocalStack)
//   helm install of helm/vpc-ipam with user values only (cluster name, image, endpoints)
//
// Control socket (.run/cluster/control.sock, HTTP): GET /state; POST /nodes/<name>/kubelet/stop,
// /nodes/<name>/kubelet/start, /nodes/<name>/stop (the whole node, as when its instance dies).
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import {
  createServer,
  type Server as HttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import type { Server } from 'node:net';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Ec2MetadataMock } from '../test/helpers/ec2-metadata-mock.ts';
import { exposeNetnsPort, serveUnixToTcp, startNetnsForwarder } from '../test/helpers/forwarder.ts';
import { LocalVpc } from '../test/helpers/local-vpc.ts';
import { deleteCluster, seedCluster, uniqueClusterName } from '../test/helpers/localstack.ts';
import { addVethPair, Cleanup, createNetns, ipBatch } from '../test/helpers/netns.ts';
import { buildImages, type ImageSet } from './build-images.ts';
import { apiGet, type ControlPlane, startControlPlane } from './control-plane.ts';
import { ClusterNode } from './node.ts';
import { freePort, toolBin, waitFor } from './proc.ts';

const pexec = promisify(execFile);
export const ROOT = resolve(import.meta.dirname, '..');
export const RUN_DIR = join(ROOT, '.run', 'cluster');
export const STATE_FILE = join(RUN_DIR, 'state.json');
export const CONTROL_SOCKET = join(RUN_DIR, 'control.sock');
/** The control-plane netns address: the API server's advertised address and the EC2 endpoint. */
export const CP_ADDRESS = '198.18.1.2';
export const EC2_ENDPOINT_PORT = 4566;
export const RELEASE = 'vpc-ipam';
export const NAMESPACE = 'kube-system';

export interface TestbedNode {
  name: string;
  ns: string;
  instanceId: string;
  instanceType: string;
  privateIp: string;
  subnetId: string;
  dir: string;
  /** The node's /etc/cni/net.d on the real filesystem. */
  cniConfDir: string;
  /** The daemon's socket as the node's /run/vpc-ipam sees it (reachable while kubelet is down). */
  socketPath: string;
  logs: string;
}

export interface TestbedState {
  pid: number;
  prefix: string;
  clusterName: string;
  region: string;
  ec2Endpoint: string;
  vpcId: string;
  vpcCidrs: string[];
  kubeconfig: string;
  apiServer: string;
  nodes: TestbedNode[];
  images: ImageSet;
  valuesFile: string;
  internetServer: string;
  fabricNs: string;
  internetNs: string;
  upSeconds: number;
  /** Each node's Ready condition just before `helm install`. */
  beforeInstall: { name: string; ready: boolean; message: string }[];
  /** When `helm install` started (ms since the epoch). */
  installedAt: number;
}

const say = (m: string) => process.stderr.write(`[testbed ${new Date().toISOString().slice(11, 19)}] ${m}\n`);

export function nodeNameFor(privateIp: string): string {
  return `ip-${privateIp.replaceAll('.', '-')}.ec2.internal`;
}

export async function helm(kubeconfig: string, args: string[]): Promise<string> {
  try {
    return (await pexec(toolBin('helm'), [...args, '--kubeconfig', kubeconfig], { maxBuffer: 16 << 20 }))
      .stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`helm ${args.join(' ')} failed: ${err.stderr?.trim() || err.message}`);
  }
}

/** The values a user would write: cluster name, image, endpoints (and LocalStack's dummy keys). */
export function userValues(s: {
  clusterName: string;
  region: string;
  image: string;
  extra?: Record<string, string>;
}): string {
  const [repository, tag] = s.image.split(/:(?=[^:]+$)/);
  const ec2 = `http://${CP_ADDRESS}:${EC2_ENDPOINT_PORT}`;
  // LocalStack accepts any keys; on EC2 these come from the instance role or IRSA instead
  const creds = { AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' };
  return JSON.stringify(
    {
      clusterName: s.clusterName,
      image: { repository, tag, pullPolicy: 'IfNotPresent' },
      daemon: {
        env: {
          AWS_REGION: s.region,
          VPC_IPAM_EC2_ENDPOINT: ec2,
          // LocalStack picks colliding addresses itself; real EC2 does not need this
          VPC_IPAM_AWS_PICK_ADDRESSES: 'true',
          ...creds,
          ...s.extra,
        },
      },
      janitor: {
        env: {
          AWS_REGION: s.region,
          VPC_IPAM_EC2_ENDPOINT: ec2,
          // sweep often and judge ENIs after 60 s (its minimum) (defaults: 300 s and an hour) so a scenario can watch it
          JANITOR_INTERVAL: '10',
          JANITOR_GRACE_PERIOD: '60',
          ...creds,
        },
      },
    },
    null,
    2,
  );
}

async function up(): Promise<void> {
  const t0 = Date.now();
  const cleanup = new Cleanup();
  let stopping = false;
  const teardown = async (code: number, why: string) => {
    if (stopping) return;
    stopping = true;
    say(`tearing down (${why})`);
    const errors = await cleanup.run((what, ms) => {
      if (ms > 2000) say(`teardown: ${what} took ${(ms / 1000).toFixed(1)} s`);
    });
    for (const e of errors) say(`cleanup: ${e}`);
    rmSync(STATE_FILE, { force: true });
    say('down');
    process.exit(code);
  };
  process.once('SIGTERM', () => void teardown(0, 'SIGTERM'));
  process.once('SIGINT', () => void teardown(0, 'SIGINT'));
  process.once('SIGHUP', () => void teardown(0, 'SIGHUP'));
  try {
    mkdirSync(RUN_DIR, { recursive: true });
    const prefix = `k${Math.floor(Math.random() * 0xfff)
      .toString(16)
      .padStart(3, '0')}`;
    const dir = join(RUN_DIR, prefix);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    // last step of the teardown: the nodes' image snapshots are large (a minute and more to
    // delete on a busy disk), so they are renamed out of the way and deleted in the background
    cleanup.add('run directory', () => {
      const trash = join(RUN_DIR, `.trash-${prefix}-${Date.now()}`);
      renameSync(dir, trash);
      spawn('rm', ['-rf', trash], { detached: true, stdio: 'ignore' }).unref();
    });

    say('building images');
    const images = await buildImages();

    const clusterName = uniqueClusterName('testbed');
    say(`seeding LocalStack (${clusterName})`);
    const seed = await seedCluster({ clusterName });
    cleanup.add('LocalStack cluster', async () => {
      const problems = await deleteCluster({ clusterName });
      for (const p of problems) say(`LocalStack cleanup: ${p}`);
    });

    say('local VPC');
    const vpc = new LocalVpc(seed, prefix, join(dir, 'vpc'), cleanup);
    await vpc.build();
    for (const instance of seed.instances) await vpc.addNode(instance);
    vpc.startSyncLoop(300);

    // control-plane netns on the fabric: 198.18.1.1 (fabric) <-> 198.18.1.2 (cp)
    const cpNs = `${prefix}-cp`;
    await createNetns(cpNs, cleanup);
    await addVethPair({ name: `${prefix}fc`, ns: vpc.fabric }, { name: `${prefix}cf`, ns: cpNs });
    await ipBatch(vpc.fabric, [`addr add 198.18.1.1/30 dev ${prefix}fc`, `link set ${prefix}fc up`]);
    await ipBatch(cpNs, [
      `addr add ${CP_ADDRESS}/30 dev ${prefix}cf`,
      `link set ${prefix}cf up`,
      ...vpc.vpcCidrs.map((c) => `route add ${c} via 198.18.1.1`),
    ]);

    say('control plane');
    const cp: ControlPlane = await startControlPlane({
      dir: join(dir, 'control-plane'),
      controllers: true,
      advertiseAddress: CP_ADDRESS,
    });
    cleanup.add('control plane', () => cp.stop());
    const apiSock = join(dir, 'apiserver.sock');
    const apiServer = await serveUnixToTcp(apiSock, cp.apiPort);
    cleanup.add('apiserver socket', () => apiServer.close());
    const cpFwd = await startNetnsForwarder(cpNs, {
      [`${CP_ADDRESS}:${cp.apiPort}`]: apiSock,
      [`${CP_ADDRESS}:${EC2_ENDPOINT_PORT}`]: join(vpc.dir, 'localstack.sock'),
    });
    cleanup.add('control-plane forwarder', () => cpFwd.kill('SIGKILL'));

    say('nodes');
    const nodes: ClusterNode[] = [];
    const exposed: Server[] = [];
    const hosts: Record<string, string> = {};
    for (const vn of vpc.nodes) {
      const inst = vn.instance;
      const name = nodeNameFor(inst.privateIp);
      const zone = inst.az;
      // IMDS at 169.254.169.254 inside the node: the real ec2-metadata-mock, one per ENI MAC behind
      // a path router, its configs rewritten from LocalStack as ENIs and IPs change
      const imds = new Ec2MetadataMock(
        { instanceId: inst.id, endpoint: seed.endpoint, region: seed.region },
        join(vn.dir, 'imds'),
      );
      await imds.start(300);
      cleanup.add(`imds ${name}`, () => imds.close());
      const imdsSock = join(vn.dir, 'imds.sock');
      const imdsServer = await serveUnixToTcp(imdsSock, imds.port);
      cleanup.add(`imds socket ${name}`, () => imdsServer.close());
      await ipBatch(vn.ns, ['addr add 169.254.169.254/32 dev lo']);
      const fwd = await startNetnsForwarder(vn.ns, {
        [cp.apiPort]: apiSock,
        '169.254.169.254:80': imdsSock,
      });
      cleanup.add(`forwarder ${name}`, () => fwd.kill('SIGKILL'));
      const kubeletPort = await freePort();
      const ex = await exposeNetnsPort(vn.ns, kubeletPort, join(vn.dir, 'kubelet.sock'));
      cleanup.add(`kubelet exposure ${name}`, () => {
        ex.child.kill('SIGKILL');
        ex.server.close();
      });
      exposed.push(ex.server);
      hosts[name] = '127.0.0.1';
      const node = new ClusterNode({
        name,
        netnsPath: vn.nsPath,
        dir: join(dir, 'nodes', `n${vn.index}`),
        nodeIp: inst.privateIp,
        providerId: `aws:///${zone}/${inst.id}`,
        instanceType: inst.type,
        zone,
        apiPort: cp.apiPort,
        kubeletPort,
        cgroupRoot: `vpc-ipam-${prefix}-n${vn.index}`,
        clusterCidr: seed.cidr,
        pki: cp.pki,
        pauseRef: images.pause.ref,
        images: [images.pause.archive, images.busybox.archive, images.product.archive],
      });
      await node.issueCerts();
      cleanup.add(`node ${name}`, () => node.stop());
      nodes.push(node);
    }
    cp.setKubeletHosts(hosts);
    await Promise.all(nodes.map((n) => n.start()));

    // Before the chart: nodes registered but NotReady, kubelet waiting for a CNI config
    const beforeInstall = await waitFor(
      'both nodes registered',
      async () => {
        const r = await apiGet(cp, '/api/v1/nodes');
        const list = JSON.parse(r.body) as {
          items: {
            metadata: { name: string };
            status: { conditions?: { type: string; status: string; message?: string }[] };
          }[];
        };
        if (list.items.length !== nodes.length) return undefined;
        return list.items.map((n) => {
          const ready = n.status.conditions?.find((c) => c.type === 'Ready');
          return { name: n.metadata.name, ready: ready?.status === 'True', message: ready?.message ?? '' };
        });
      },
      60_000,
      500,
    );
    const installedAt = Date.now();
    say('helm install');
    const valuesFile = join(dir, 'values.json');
    writeFileSync(valuesFile, userValues({ clusterName, region: seed.region, image: images.product.ref }));
    await helm(cp.adminKubeconfig, [
      'install',
      RELEASE,
      join(ROOT, 'helm', 'vpc-ipam'),
      '--namespace',
      NAMESPACE,
      '--values',
      valuesFile,
    ]);

    const kubeconfig = join(RUN_DIR, 'kubeconfig');
    writeFileSync(kubeconfig, readFileSync(cp.adminKubeconfig));
    const state: TestbedState = {
      pid: process.pid,
      prefix,
      clusterName,
      region: seed.region,
      ec2Endpoint: seed.endpoint,
      vpcId: seed.vpcId,
      vpcCidrs: vpc.vpcCidrs,
      kubeconfig,
      apiServer: cp.server,
      nodes: nodes.map((n, i) => {
        const vn = vpc.nodes[i]!;
        return {
          name: n.name,
          ns: vn.ns,
          instanceId: vn.instance.id,
          instanceType: vn.instance.type,
          privateIp: vn.instance.privateIp,
          subnetId: vn.instance.subnetId,
          dir: n.opts.dir,
          cniConfDir: n.hostPath('/etc/cni/net.d'),
          socketPath: join(n.hostPath('/run/vpc-ipam'), 'ipamd.sock'),
          logs: join(n.opts.dir, 'logs'),
        };
      }),
      images,
      valuesFile,
      internetServer: '203.0.113.10',
      fabricNs: vpc.fabric,
      internetNs: vpc.inet,
      upSeconds: (Date.now() - t0) / 1000,
      beforeInstall,
      installedAt,
    };
    const control = startControlServer(nodes);
    cleanup.add('control socket', () => control.close());
    writeFileSync(STATE_FILE, `${JSON.stringify(state, null, 2)}\n`);
    say(`up in ${state.upSeconds.toFixed(1)} s; KUBECONFIG=${kubeconfig}`);
  } catch (e) {
    say(`failed: ${(e as Error).stack ?? e}`);
    await teardown(1, 'failed');
  }
}

function startControlServer(nodes: ClusterNode[]): HttpServer {
  rmSync(CONTROL_SOCKET, { force: true });
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const reply = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const m = /^\/nodes\/([^/]+)\/(kubelet\/stop|kubelet\/start|stop)$/.exec(req.url ?? '');
    if (req.method === 'GET' && req.url === '/state') {
      reply(200, existsSync(STATE_FILE) ? JSON.parse(readFileSync(STATE_FILE, 'utf8')) : {});
      return;
    }
    const node = m ? nodes.find((n) => n.name === m[1]) : undefined;
    if (req.method !== 'POST' || !m || !node) {
      reply(404, { error: `unknown: ${req.method} ${req.url}` });
      return;
    }
    const action =
      m[2] === 'kubelet/stop'
        ? node.stopKubelet()
        : m[2] === 'kubelet/start'
          ? node.startKubelet()
          : node.stop();
    action.then(
      () => reply(200, { ok: true }),
      (e: Error) => reply(500, { error: e.message }),
    );
  });
  server.listen(CONTROL_SOCKET);
  return server;
}

/** The running test bed's state, or undefined when none is up. */
export function readState(): TestbedState | undefined {
  if (!existsSync(STATE_FILE)) return undefined;
  const state = JSON.parse(readFileSync(STATE_FILE, 'utf8')) as TestbedState;
  try {
    process.kill(state.pid, 0);
    return state;
  } catch {
    return undefined;
  }
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) void up();
