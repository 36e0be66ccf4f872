// One Kubernetes node of the cluster test bed: a network namespace of the local VPC (its ENIs are
// its interfaces) plus a private mount namespace in which its own containerd (Debian, runc,
// cgroupfs), kubelet and kube-proxy run. The mount namespace gives the node the host paths a real
// node has — /etc/cni/net.d, /opt/cni/bin, /run/vpc-ipam, /var/lib/kubelet, /var/lib/containerd,
// /run/containerd ... — each bind-mounted from the node's own directory, so the chart's hostPath
// volumes and the CNI plugin behave as on a real machine while two nodes share one kernel.
//
// The node reaches the API server at 127.0.0.1:<apiPort> through a loopback forwarder (the API
// server listens in the root namespace, which never routes VPC addresses), and its kubelet is
// reached by the API server through the reverse forwarder the test bed sets up.
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { run } from '../test/helpers/netns.ts';
import { MountNamespace } from './mountns.ts';
import { type CertFiles, type Pki, writeKubeconfig } from './pki.ts';
import { type Child, k8sBin, waitFor } from './proc.ts';

/** Host paths every node gets its own copy of (bind mounts inside the node's mount namespace). */
const NODE_PATHS = [
  '/etc/cni/net.d',
  '/opt/cni/bin',
  '/run/vpc-ipam',
  '/var/lib/vpc-ipam',
  '/var/log/vpc-ipam',
  '/var/lib/kubelet',
  '/var/lib/containerd',
  '/run/containerd',
  '/var/lib/cni',
  '/var/log/pods',
  '/var/log/containers',
  // containerd pins pod network namespaces here; the chart mounts it into the daemon
  '/run/netns',
];

export interface NodeOptions {
  name: string;
  /** Network namespace path (/run/netns/...). */
  netnsPath: string;
  /** The node's state directory (its host paths live under it). */
  dir: string;
  nodeIp: string;
  providerId: string;
  instanceType: string;
  zone: string;
  /** API server port on 127.0.0.1 inside the node (a forwarder to the real one). */
  apiPort: number;
  kubeletPort: number;
  /** Per-node cgroup parent (two kubelets must not share /kubepods). */
  cgroupRoot: string;
  clusterCidr: string;
  pki: Pki;
  pauseRef: string;
  images: string[];
  maxPods?: number;
}

function dirFor(path: string): string {
  return path.replace(/^\//, '').replaceAll('/', '-');
}

/** cgroup v1 hierarchies on this machine (one directory per mounted controller set). */
function cgroupHierarchies(): string[] {
  const mounts = readFileSync('/proc/self/mounts', 'utf8').split('\n');
  return mounts
    .map((l) => l.split(' '))
    .filter((f) => f[2] === 'cgroup' || f[2] === 'cgroup2')
    .map((f) => f[1]!)
    .filter((p) => p.startsWith('/sys/fs/cgroup'));
}

function createCgroupRoot(root: string): void {
  for (const h of cgroupHierarchies()) {
    const dir = join(h, root);
    mkdirSync(dir, { recursive: true });
    // a new cpuset cgroup starts with no CPUs or memory nodes; inherit the parent's
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      const parent = join(h, f);
      if (existsSync(parent) && readFileSync(join(dir, f), 'utf8').trim() === '')
        writeFileSync(join(dir, f), readFileSync(parent, 'utf8').trim());
    }
  }
}

/** Every process in the cgroup tree (read from the pids hierarchy, or the first one mounted). */
function cgroupProcs(root: string): number[] {
  const h = cgroupHierarchies().find((p) => p.endsWith('/pids')) ?? cgroupHierarchies()[0];
  const pids: number[] = [];
  const walk = (dir: string) => {
    if (!existsSync(dir)) return;
    const procs = join(dir, 'cgroup.procs');
    if (existsSync(procs))
      for (const l of readFileSync(procs, 'utf8').split('\n')) if (l) pids.push(Number(l));
    for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) walk(join(dir, e.name));
  };
  if (h) walk(join(h, root));
  return pids;
}

function removeCgroupTree(dir: string): void {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true }))
    if (e.isDirectory()) removeCgroupTree(join(dir, e.name));
  try {
    rmdirSync(dir);
  } catch {}
}

export class ClusterNode {
  readonly opts: NodeOptions;
  mnt: MountNamespace | null = null;
  containerd: Child | null = null;
  kubelet: Child | null = null;
  kubeProxy: Child | null = null;
  private kubeletArgs: string[] = [];

  constructor(opts: NodeOptions) {
    this.opts = opts;
  }

  get name(): string {
    return this.opts.name;
  }

  /** Where a host path of this node lives on the real filesystem (e.g. its /etc/cni/net.d). */
  hostPath(path: string): string {
    return join(this.opts.dir, 'root', dirFor(path));
  }

  log(name: string): string {
    return join(this.opts.dir, 'logs', `${name}.log`);
  }

  async start(): Promise<void> {
    const o = this.opts;
    mkdirSync(join(o.dir, 'logs'), { recursive: true });
    createCgroupRoot(o.cgroupRoot);
    this.mnt = await MountNamespace.create(o.name, o.netnsPath);
    // a node's / is a shared mount (systemd makes it so); containerd refuses HostToContainer and
    // Bidirectional volumes otherwise. Shared inside this namespace only: a new peer group.
    await this.mnt.exec('mount', ['--make-rshared', '/']);
    for (const p of NODE_PATHS) await this.mnt.bind(this.hostPath(p), p);
    // containerd's CRI plugin sets up the pod's lo with the standard loopback plugin
    for (const plugin of ['loopback', 'portmap'])
      copyFileSync(`/usr/lib/cni/${plugin}`, join(this.hostPath('/opt/cni/bin'), plugin));
    await this.startContainerd();
    for (const image of o.images) await this.mnt.exec('ctr', ['-n', 'k8s.io', 'images', 'import', image]);
    this.writeKubeConfigs();
    await this.startKubelet();
    this.startKubeProxy();
  }

  private async startContainerd(): Promise<void> {
    const o = this.opts;
    const config = join(o.dir, 'containerd.toml');
    writeFileSync(
      config,
      [
        'version = 2',
        '[plugins."io.containerd.grpc.v1.cri"]',
        `  sandbox_image = "${o.pauseRef}"`,
        // lowering oom_score_adj is not allowed here; without this every sandbox fails with
        // "can't get final child's PID from pipe"
        '  restrict_oom_score_adj = true',
        '  [plugins."io.containerd.grpc.v1.cri".containerd]',
        '    snapshotter = "overlayfs"',
        '    default_runtime_name = "runc"',
        '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
        '      runtime_type = "io.containerd.runc.v2"',
        '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
        '        SystemdCgroup = false',
        '  [plugins."io.containerd.grpc.v1.cri".cni]',
        '    bin_dir = "/opt/cni/bin"',
        '    conf_dir = "/etc/cni/net.d"',
        '',
      ].join('\n'),
    );
    this.containerd = this.mnt!.start(
      'containerd',
      '/usr/bin/containerd',
      ['--config', config],
      this.log('containerd'),
    );
    await waitFor(
      `containerd of ${o.name}`,
      async () => ((await this.mnt!.exec('ctr', ['version']).catch(() => null)) ? true : undefined),
      60_000,
      250,
      this.containerd,
    );
  }

  private writeKubeConfigs(): void {
    const o = this.opts;
    const server = `https://127.0.0.1:${o.apiPort}`;
    writeKubeconfig(join(o.dir, 'kubelet.kubeconfig'), server, o.pki.ca.cert, this.kubeletCert);
    writeKubeconfig(join(o.dir, 'kube-proxy.kubeconfig'), server, o.pki.ca.cert, this.proxyCert);
    writeFileSync(
      join(o.dir, 'kubelet.yaml'),
      JSON.stringify(
        {
          apiVersion: 'kubelet.config.k8s.io/v1beta1',
          kind: 'KubeletConfiguration',
          authentication: {
            anonymous: { enabled: false },
            webhook: { enabled: true },
            x509: { clientCAFile: o.pki.ca.cert },
          },
          authorization: { mode: 'Webhook' },
          cgroupDriver: 'cgroupfs',
          cgroupRoot: `/${o.cgroupRoot}`,
          // this machine has cgroup v1
          failCgroupV1: false,
          failSwapOn: false,
          containerRuntimeEndpoint: 'unix:///run/containerd/containerd.sock',
          port: o.kubeletPort,
          readOnlyPort: 0,
          healthzBindAddress: '127.0.0.1',
          providerID: o.providerId,
          maxPods: o.maxPods ?? 110,
          resolvConf: '/etc/resolv.conf',
          clusterDomain: 'cluster.local',
          serializeImagePulls: false,
          // a shared test machine: never evict for disk or image pressure, never GC images
          evictionHard: { 'memory.available': '50Mi', 'nodefs.available': '1%', 'imagefs.available': '1%' },
          imageGCHighThresholdPercent: 100,
          imageGCLowThresholdPercent: 99,
          nodeStatusUpdateFrequency: '5s',
          syncFrequency: '10s',
        },
        null,
        2,
      ),
    );
    this.kubeletArgs = [
      `--config=${join(o.dir, 'kubelet.yaml')}`,
      `--kubeconfig=${join(o.dir, 'kubelet.kubeconfig')}`,
      `--hostname-override=${o.name}`,
      `--node-ip=${o.nodeIp}`,
      `--node-labels=node.kubernetes.io/instance-type=${o.instanceType},topology.kubernetes.io/zone=${o.zone}`,
      '--v=1',
    ];
  }

  private kubeletCert!: CertFiles;
  private proxyCert!: CertFiles;

  /** Issues the node's client certificates (call before start()). */
  async issueCerts(): Promise<void> {
    this.kubeletCert = await this.opts.pki.issue(`kubelet-${this.opts.name}`, {
      cn: `system:node:${this.opts.name}`,
      org: 'system:nodes',
    });
    this.proxyCert = await this.opts.pki.issue('kube-proxy', { cn: 'system:kube-proxy' });
  }

  async startKubelet(): Promise<void> {
    if (this.kubelet && this.kubelet.proc.exitCode === null) return;
    this.kubelet = this.mnt!.start('kubelet', k8sBin('kubelet'), this.kubeletArgs, this.log('kubelet'));
    await waitFor(
      `kubelet of ${this.name} healthz`,
      async () => {
        const r = await this.mnt!.exec('curl', ['-sf', 'http://127.0.0.1:10248/healthz']).catch(() => null);
        return r?.stdout.trim() === 'ok' ? true : undefined;
      },
      90_000,
      500,
      this.kubelet,
    );
  }

  async stopKubelet(): Promise<void> {
    await this.kubelet?.stop();
    this.kubelet = null;
  }

  private startKubeProxy(): void {
    const o = this.opts;
    const config = join(o.dir, 'kube-proxy.yaml');
    writeFileSync(
      config,
      JSON.stringify(
        {
          apiVersion: 'kubeproxy.config.k8s.io/v1alpha1',
          kind: 'KubeProxyConfiguration',
          clientConnection: { kubeconfig: join(o.dir, 'kube-proxy.kubeconfig') },
          mode: 'iptables',
          hostnameOverride: o.name,
          clusterCIDR: o.clusterCidr,
          // conntrack sysctls are global here; leave them alone
          conntrack: { maxPerCore: 0, tcpEstablishedTimeout: '0s', tcpCloseWaitTimeout: '0s' },
          metricsBindAddress: '127.0.0.1:10249',
          healthzBindAddress: '127.0.0.1:10256',
        },
        null,
        2,
      ),
    );
    this.kubeProxy = this.mnt!.start(
      'kube-proxy',
      k8sBin('kube-proxy'),
      [`--config=${config}`, '--v=1'],
      this.log('kube-proxy'),
    );
  }

  async stop(): Promise<void> {
    await this.kubeProxy?.stop();
    await this.stopKubelet();
    // the pods' containers: kill every task containerd runs, then containerd itself
    if (this.mnt && this.containerd) {
      const tasks = await this.mnt
        .exec('ctr', ['-n', 'k8s.io', 'tasks', 'ls', '-q'])
        .catch(() => ({ stdout: '' }));
      for (const id of tasks.stdout.split('\n').filter(Boolean))
        await this.mnt.exec('ctr', ['-n', 'k8s.io', 'tasks', 'kill', '-s', 'SIGKILL', id]).catch(() => {});
    }
    await this.containerd?.stop();
    // shims outlive containerd by design; they are in this node's mount namespace
    if (this.mnt) {
      await run('pkill', [
        '-KILL',
        '-f',
        `containerd-shim-runc-v2 -namespace k8s.io -id`,
        '--ns',
        String(this.mnt.pid),
        '--nslist',
        'mnt',
      ]).catch(() => {});
      await this.mnt.close();
    }
    // anything of this node still alive in its cgroups (e.g. a `runc init` caught mid-create when
    // containerd went away) is killed, then the cgroups go; killed tasks leave them a moment later
    for (const pid of cgroupProcs(this.opts.cgroupRoot)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
    for (let i = 0; i < 10; i++) {
      const left = cgroupHierarchies().filter((h) => existsSync(join(h, this.opts.cgroupRoot)));
      if (left.length === 0) break;
      for (const h of left) removeCgroupTree(join(h, this.opts.cgroupRoot));
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}
