// A real Kubernetes control plane on loopback: etcd (Debian etcd-server), kube-apiserver with RBAC,
// the Node authorizer and ServiceAccount tokens, and optionally kube-controller-manager and
// kube-scheduler (binaries from cluster/build-k8s.sh). Every port is picked free at start, so
// several can run side by side.
//
//   const cp = await startControlPlane({ dir: '/tmp/x' });   // etcd + kube-apiserver only
//   cp.adminKubeconfig  -> a kubeconfig with system:masters rights (for the test, never the product)
//   await cp.stop();
//
// CLI (a bare control plane in the foreground until Ctrl-C, printing the kubeconfig path):
//   node cluster/control-plane.ts --dir /tmp/cp [--controllers]
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { MountNamespace } from './mountns.ts';
import { ensurePki, type Pki, writeKubeconfig } from './pki.ts';
import { type Child, freePort, k8sBin, startChild, waitFor } from './proc.ts';

export const SERVICE_CIDR = '172.20.0.0/16';
export const KUBERNETES_SERVICE_IP = '172.20.0.1';

export interface ControlPlaneOptions {
  dir: string;
  /** Also run kube-controller-manager and kube-scheduler (default false: etcd + apiserver only). */
  controllers?: boolean;
  /** The address published in the `kubernetes` Service's endpoints (default 127.0.0.1). */
  advertiseAddress?: string;
  /** Extra IPs for the serving certificate. */
  extraIps?: string[];
  /** More kube-apiserver flags (tests: e.g. --watch-cache-sizes=pods#0 so etcd compaction gives a real 410). */
  apiServerArgs?: string[];
}

export interface ControlPlane {
  dir: string;
  pki: Pki;
  apiPort: number;
  server: string;
  /** etcd's client URL (tests compact it to make a real 410 Gone). */
  etcdUrl: string;
  adminKubeconfig: string;
  /** Node names -> address the API server dials for kubelet (logs, exec): it reads this hosts file. */
  setKubeletHosts(hosts: Record<string, string>): void;
  /** Stops kube-apiserver and starts it again on the same port and etcd (a control-plane upgrade). */
  restartApiServer(): Promise<void>;
  children: Child[];
  stop(): Promise<void>;
}

/** GET on the API server with the admin certificate; resolves with status and body. */
export function apiGet(
  cp: Pick<ControlPlane, 'pki' | 'apiPort'>,
  path: string,
  cert = 'admin',
): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: cp.apiPort,
        path,
        ca: readFileSync(cp.pki.ca.cert),
        cert: readFileSync(join(cp.pki.dir, `${cert}.crt`)),
        key: readFileSync(join(cp.pki.dir, `${cert}.key`)),
        timeout: 5000,
      },
      (r) => {
        let body = '';
        r.on('data', (c: Buffer) => {
          body += c.toString();
        });
        r.on('end', () => res({ status: r.statusCode ?? 0, body }));
      },
    );
    req.on('error', rej);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const dir = resolve(options.dir);
  mkdirSync(dir, { recursive: true });
  const logs = join(dir, 'logs');
  mkdirSync(logs, { recursive: true });
  const children: Child[] = [];
  const holders: MountNamespace[] = [];
  const stop = async () => {
    for (const c of children.reverse()) await c.stop();
    for (const h of holders) await h.close();
  };
  try {
    const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
    const advertise = options.advertiseAddress ?? '127.0.0.1';
    const pki = await ensurePki(join(dir, 'pki'));
    const serving = await pki.issue(`apiserver-${advertise}`, {
      cn: 'kube-apiserver',
      ips: ['127.0.0.1', KUBERNETES_SERVICE_IP, advertise, ...(options.extraIps ?? [])],
      dns: [
        'localhost',
        'kubernetes',
        'kubernetes.default',
        'kubernetes.default.svc',
        'kubernetes.default.svc.cluster.local',
      ],
    });
    const admin = await pki.issue('admin', { cn: 'testbed-admin', org: 'system:masters' });
    const kubeletClient = await pki.issue('apiserver-kubelet-client', {
      cn: 'kube-apiserver-kubelet-client',
      org: 'system:masters',
    });
    const server = `https://127.0.0.1:${apiPort}`;
    const adminKubeconfig = join(dir, 'admin.kubeconfig');
    writeKubeconfig(adminKubeconfig, server, pki.ca.cert, admin);

    // etcd: a fresh data dir every start (the test bed is disposable).
    const etcdData = join(dir, 'etcd');
    rmSync(etcdData, { recursive: true, force: true });
    const etcd = startChild(
      'etcd',
      '/usr/bin/etcd',
      [
        '--name=testbed',
        `--data-dir=${etcdData}`,
        `--listen-client-urls=http://127.0.0.1:${etcdPort}`,
        `--advertise-client-urls=http://127.0.0.1:${etcdPort}`,
        `--listen-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
        `--initial-cluster=testbed=http://127.0.0.1:${peerPort}`,
        '--unsafe-no-fsync',
        '--log-level=warn',
      ],
      join(logs, 'etcd.log'),
    );
    children.push(etcd);

    // kube-apiserver runs in its own mount namespace so that a private /etc/hosts can point node
    // names at loopback forwarders: kubelets live in their nodes' network namespaces, whose VPC
    // addresses are never routed in the root namespace.
    const hostsFile = join(dir, 'apiserver-hosts');
    writeFileSync(hostsFile, '127.0.0.1 localhost\n');
    const apiNs = await MountNamespace.create('kube-apiserver');
    holders.push(apiNs);
    await apiNs.bindFile(hostsFile, '/etc/hosts');
    const startApiServer = () =>
      apiNs.start(
        'kube-apiserver',
        k8sBin('kube-apiserver'),
        [
          `--etcd-servers=http://127.0.0.1:${etcdPort}`,
          '--bind-address=127.0.0.1',
          `--secure-port=${apiPort}`,
          `--advertise-address=${advertise}`,
          `--tls-cert-file=${serving.cert}`,
          `--tls-private-key-file=${serving.key}`,
          `--client-ca-file=${pki.ca.cert}`,
          '--authorization-mode=Node,RBAC',
          '--enable-admission-plugins=NodeRestriction',
          `--service-account-issuer=https://kubernetes.default.svc.cluster.local`,
          `--service-account-key-file=${pki.saPub}`,
          `--service-account-signing-key-file=${pki.saKey}`,
          `--service-cluster-ip-range=${SERVICE_CIDR}`,
          `--kubelet-client-certificate=${kubeletClient.cert}`,
          `--kubelet-client-key=${kubeletClient.key}`,
          '--kubelet-preferred-address-types=Hostname,InternalIP',
          '--allow-privileged=true',
          '--profiling=false',
          '--endpoint-reconciler-type=lease',
          '--v=1',
          ...(options.apiServerArgs ?? []),
        ],
        join(logs, 'kube-apiserver.log'),
      );
    let apiserver = startApiServer();
    children.push(apiserver);
    const ready = (child: Child) =>
      waitFor(
        'kube-apiserver /readyz',
        async () => ((await apiGet(cp, '/readyz')).status === 200 ? true : undefined),
        120_000,
        500,
        child,
      );
    const cp: ControlPlane = {
      dir,
      pki,
      apiPort,
      server,
      etcdUrl: `http://127.0.0.1:${etcdPort}`,
      adminKubeconfig,
      children,
      stop,
      async restartApiServer() {
        await apiserver.stop();
        const next = startApiServer();
        children[children.indexOf(apiserver)] = next;
        apiserver = next;
        await ready(next);
      },
      setKubeletHosts(hosts) {
        // rewritten in place: the API server's /etc/hosts is a bind mount of this very file
        const lines = [
          '127.0.0.1 localhost',
          ...Object.entries(hosts).map(([name, addr]) => `${addr} ${name}`),
        ];
        writeFileSync(hostsFile, `${lines.join('\n')}\n`);
      },
    };
    await ready(apiserver);

    if (options.controllers) {
      // kube-controller-manager and kube-scheduler: a client certificate each, the same serving and
      // delegated-auth flags, no leader election (one of each)
      const component = async (name: string, extra: string[]) => {
        const cert = await pki.issue(name, { cn: `system:${name}` });
        const config = join(dir, `${name}.kubeconfig`);
        writeKubeconfig(config, server, pki.ca.cert, cert);
        const auth = ['', 'authentication-', 'authorization-'].map((p) => `--${p}kubeconfig=${config}`);
        const serving = [
          '--leader-elect=false',
          '--bind-address=127.0.0.1',
          `--secure-port=${await freePort()}`,
        ];
        children.push(
          startChild(name, k8sBin(name), [...auth, ...serving, ...extra, '--v=1'], join(logs, `${name}.log`)),
        );
      };
      await component('kube-controller-manager', [
        `--service-account-private-key-file=${pki.saKey}`,
        `--root-ca-file=${pki.ca.cert}`,
        '--use-service-account-credentials=true',
        `--service-cluster-ip-range=${SERVICE_CIDR}`,
        // a node whose kubelet stops is NotReady after 20 s (the scenarios stop one on purpose)
        '--node-monitor-grace-period=20s',
      ]);
      await component('kube-scheduler', []);
      // the controller-manager's ServiceAccount controller makes `default` in every namespace
      await waitFor(
        'ServiceAccount default/default (kube-controller-manager)',
        async () =>
          (await apiGet(cp, '/api/v1/namespaces/default/serviceaccounts/default')).status === 200
            ? true
            : undefined,
        120_000,
        500,
      );
    }
    return cp;
  } catch (e) {
    await stop();
    throw e;
  }
}

async function cli(): Promise<void> {
  const { values } = parseArgs({
    options: { dir: { type: 'string' }, controllers: { type: 'boolean', default: false } },
  });
  if (!values.dir) throw new Error('usage: node cluster/control-plane.ts --dir DIR [--controllers]');
  const cp = await startControlPlane({ dir: values.dir, controllers: values.controllers });
  process.stdout.write(`kubeconfig: ${cp.adminKubeconfig}\nserver: ${cp.server}\n`);
  const bye = () => void cp.stop().then(() => process.exit(0));
  process.once('SIGINT', bye);
  process.once('SIGTERM', bye);
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  if (!existsSync('/usr/bin/etcd')) throw new Error('etcd is missing: run bash cluster/build-k8s.sh');
  cli().catch((e) => {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exit(1);
  });
}
