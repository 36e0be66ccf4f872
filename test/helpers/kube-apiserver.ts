// A real kube-apiserver + etcd for the integration tests of the daemon's and the janitor's
// Kubernetes side (cluster/control-plane.ts: Debian etcd, kube-apiserver v1.34.4 built from the Go
// module proxy, RBAC + Node authorizer + ServiceAccount tokens). The chart's CRDs are applied, and
// its RBAC (`helm template` of helm/vpc-ipam, as a user installs it) is bound to the chart's
// ServiceAccounts; the product under test authenticates with a TokenRequest token of those, so a
// verb the chart does not grant fails with a real 403. The admin client is for the test's own
// setup and assertions only (it plays kubelet and the user).
//
//   const kube = await startKubeApiServer('pod-watcher');      // one per test file (~10-30 s)
//   const daemon = await kube.installChart('vpc', ['--set-string', 'daemon.env.ANNOTATE_POD_IP=true']);
//   daemon.daemonKubeConfig  -> as the DaemonSet's pod; kube.admin -> the test's
//   await kube.stop();
//
// Faults in front of the real server: TcpRelay (connections cut, server unreachable) and
// startKubeFaultProxy (503/429 answers to chosen requests, the rest streamed through).
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import {
  ApiextensionsV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  type KubernetesObject,
  KubernetesObjectApi,
  loadAllYaml,
  type V1Node,
  type V1Pod,
} from '@kubernetes/client-node';
import { type ControlPlane, startControlPlane } from '../../cluster/control-plane.ts';
import { toolBin, waitFor } from '../../cluster/proc.ts';

const run = promisify(execFile);
const CHART = resolve(import.meta.dirname, '../../helm/vpc-ipam');
/** The namespace the chart is installed into (its ServiceAccounts, the janitor's Lease). */
export const RELEASE_NAMESPACE = 'kube-system';
/** The kinds of the chart's manifests that these tests apply (not the workloads). */
const APPLIED_KINDS = new Set([
  'CustomResourceDefinition',
  'ServiceAccount',
  'ClusterRole',
  'ClusterRoleBinding',
  'Role',
  'RoleBinding',
]);

export interface ChartInstall {
  release: string;
  /** As the daemon's pod authenticates: the chart's daemon ServiceAccount's token, the cluster CA. */
  daemonKubeConfig: KubeConfig;
  daemonToken: string;
  /** As the janitor's pod (only when the chart enables the janitor, its default). */
  janitorKubeConfig: KubeConfig | null;
}

export interface KubeApiServer {
  cp: ControlPlane;
  /** system:masters: the test's own setup and assertions, never the product's. */
  admin: KubeConfig;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  /** `helm template` of the chart under this release name, its CRDs/RBAC/ServiceAccounts applied. */
  installChart(release: string, helmArgs?: string[]): Promise<ChartInstall>;
  /** A kubeconfig for this server with a bearer token (server overridable: a proxy in front). */
  tokenKubeConfig(token: string, server?: string): KubeConfig;
  /** A fresh namespace with its `default` ServiceAccount (no controller-manager makes it here). */
  namespace(prefix: string): Promise<string>;
  /** A Node object as kubelet would register it (labels/annotations given). */
  createNode(
    name: string,
    meta?: { labels?: Record<string, string>; annotations?: Record<string, string> },
  ): Promise<V1Node>;
  /**
   * The Node's labels and annotations become exactly these (as a user's kubectl label/annotate).
   * Read-modify-replace, re-read on a 409: the controller-manager's node controllers update a
   * fresh Node (taints, conditions) at the same time.
   */
  setNodeMeta(
    name: string,
    meta: { labels?: Record<string, string>; annotations?: Record<string, string> },
  ): Promise<V1Node>;
  /** A pod bound to a node (as the scheduler would bind it; no kubelet runs it). */
  createPod(
    namespace: string,
    name: string,
    nodeName: string,
    annotations?: Record<string, string>,
  ): Promise<V1Pod>;
  /** Force-delete (grace 0): gone at once, as `kubectl delete --force` or a kubelet confirming. */
  forceDeletePod(namespace: string, name: string): Promise<void>;
  /** etcd's current revision compacted away: a watch resumed from before it gets a real 410. */
  compactEtcd(): Promise<number>;
  stop(): Promise<void>;
}

export interface KubeApiServerOptions {
  /** Also kube-controller-manager (+ scheduler): real garbage collection of owned objects. */
  controllers?: boolean;
  /** More kube-apiserver flags (e.g. --watch-cache-sizes=pods#0 so compaction reaches pod watches). */
  apiServerArgs?: string[];
}

export async function startKubeApiServer(
  name: string,
  options: KubeApiServerOptions = {},
): Promise<KubeApiServer> {
  const dir = mkdtempSync(join(tmpdir(), `vpc-ipam-kube-${name}-`));
  let cp: ControlPlane;
  try {
    cp = await startControlPlane({
      dir,
      controllers: options.controllers ?? false,
      ...(options.apiServerArgs ? { apiServerArgs: options.apiServerArgs } : {}),
    });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const admin = new KubeConfig();
  admin.loadFromFile(cp.adminKubeconfig);
  const core = admin.makeApiClient(CoreV1Api);
  const custom = admin.makeApiClient(CustomObjectsApi);
  const objects = KubernetesObjectApi.makeApiClient(admin);
  const extensions = admin.makeApiClient(ApiextensionsV1Api);
  const authz = admin.makeApiClient(AuthorizationV1Api);
  /**
   * Returns once the authorizer grants this ServiceAccount the verb: RBAC objects are served by
   * an informer, so a binding just created may not be in force for the first request.
   */
  const untilAuthorized = (sa: string, verb: string, resource: string, group = '', namespace?: string) =>
    waitFor(
      `${sa} may ${verb} ${resource}`,
      async () => {
        const review = await authz.createSubjectAccessReview({
          body: {
            spec: {
              user: `system:serviceaccount:${RELEASE_NAMESPACE}:${sa}`,
              groups: ['system:serviceaccounts', `system:serviceaccounts:${RELEASE_NAMESPACE}`],
              resourceAttributes: { verb, resource, group, ...(namespace ? { namespace } : {}) },
            },
          },
        });
        return review.status?.allowed ? true : undefined;
      },
      30_000,
      100,
    );
  let crdsApplied = false;

  const tokenKubeConfig = (token: string, server = cp.server): KubeConfig => {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'real', server, caFile: cp.pki.ca.cert }],
      users: [{ name: 'sa', token }],
      contexts: [{ name: 'real', cluster: 'real', user: 'sa' }],
      currentContext: 'real',
    });
    return kc;
  };
  const saToken = async (serviceAccount: string): Promise<string> => {
    const r = await core.createNamespacedServiceAccountToken({
      name: serviceAccount,
      namespace: RELEASE_NAMESPACE,
      body: { spec: { audiences: [], expirationSeconds: 3600 } },
    });
    if (!r.status?.token) throw new Error(`TokenRequest for ${serviceAccount} returned no token`);
    return r.status.token;
  };

  const kube: KubeApiServer = {
    cp,
    admin,
    core,
    custom,
    tokenKubeConfig,
    async installChart(release, helmArgs = []) {
      const { stdout } = await run(
        toolBin('helm'),
        [
          'template',
          release,
          CHART,
          '--namespace',
          RELEASE_NAMESPACE,
          '--include-crds',
          '-f',
          join(CHART, 'ci/default-values.yaml'),
          ...helmArgs,
        ],
        { maxBuffer: 16 << 20 },
      );
      const docs = (loadAllYaml(stdout) as KubernetesObject[]).filter(
        (d) => d?.kind && APPLIED_KINDS.has(d.kind),
      );
      const crds = docs.filter((d) => d.kind === 'CustomResourceDefinition');
      if (!crdsApplied) {
        for (const crd of crds) await objects.create(crd);
        for (const crd of crds) {
          const crdName = crd.metadata!.name!;
          await waitFor(
            `CRD ${crdName} Established`,
            async () => {
              const got = await extensions.readCustomResourceDefinition({ name: crdName });
              return got.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True')
                ? true
                : undefined;
            },
            30_000,
            100,
          );
        }
        crdsApplied = true;
      }
      let daemonSa: string | undefined;
      let janitorSa: string | undefined;
      for (const d of docs) {
        if (d.kind === 'CustomResourceDefinition') continue;
        await objects.create(d);
        if (d.kind === 'ServiceAccount') {
          if (d.metadata?.name?.endsWith('-janitor')) janitorSa = d.metadata.name;
          else daemonSa = d.metadata?.name;
        }
      }
      if (!daemonSa) throw new Error(`helm template ${release}: the chart rendered no daemon ServiceAccount`);
      await untilAuthorized(daemonSa, 'get', 'nodes');
      if (janitorSa) {
        await untilAuthorized(janitorSa, 'list', 'nodes');
        await untilAuthorized(janitorSa, 'create', 'leases', 'coordination.k8s.io', RELEASE_NAMESPACE);
      }
      const daemonToken = await saToken(daemonSa);
      return {
        release,
        daemonToken,
        daemonKubeConfig: tokenKubeConfig(daemonToken),
        janitorKubeConfig: janitorSa ? tokenKubeConfig(await saToken(janitorSa)) : null,
      };
    },
    async namespace(prefix) {
      const ns = `${prefix}-${Math.random().toString(36).slice(2, 8)}`;
      await core.createNamespace({ body: { metadata: { name: ns } } });
      await core
        .createNamespacedServiceAccount({ namespace: ns, body: { metadata: { name: 'default' } } })
        .catch((e: { code?: number }) => {
          if (e.code !== 409) throw e; // the controller-manager made it first
        });
      return ns;
    },
    createNode(nodeName, meta = {}) {
      return core.createNode({ body: { metadata: { name: nodeName, ...meta } } });
    },
    async setNodeMeta(nodeName, meta) {
      for (let attempt = 1; ; attempt++) {
        const current = await core.readNode({ name: nodeName });
        current.metadata = { ...current.metadata, ...meta };
        try {
          return await core.replaceNode({ name: nodeName, body: current });
        } catch (e) {
          if ((e as { code?: number }).code !== 409 || attempt >= 10) throw e;
        }
      }
    },
    createPod(namespace, podName, nodeName, annotations) {
      return core.createNamespacedPod({
        namespace,
        body: {
          metadata: { name: podName, namespace, ...(annotations ? { annotations } : {}) },
          spec: {
            nodeName,
            automountServiceAccountToken: false,
            containers: [{ name: 'app', image: 'busybox' }],
          },
        },
      });
    },
    async forceDeletePod(namespace, podName) {
      await core.deleteNamespacedPod({ namespace, name: podName, gracePeriodSeconds: 0 });
    },
    async compactEtcd() {
      // etcd's gRPC gateway: the current revision, then a physical compaction up to it
      const post = async (path: string, body: unknown) => {
        const r = await fetch(`${cp.etcdUrl}${path}`, { method: 'POST', body: JSON.stringify(body) });
        if (!r.ok) throw new Error(`etcd ${path}: HTTP ${r.status} ${await r.text()}`);
        return (await r.json()) as { header?: { revision?: string } };
      };
      const revision = Number((await post('/v3/kv/range', { key: btoa('/') })).header?.revision);
      if (!Number.isInteger(revision) || revision <= 0) throw new Error('etcd: no current revision');
      await post('/v3/kv/compaction', { revision: String(revision), physical: true });
      return revision;
    },
    async stop() {
      await cp.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return kube;
}

/**
 * A TCP relay in front of the API server, for network faults the server itself does not make: cut()
 * destroys every open connection mid-flight (a watch stream dies with no clean end), down() refuses
 * new ones (the API server is unreachable), up() listens again on the same port.
 */
export class TcpRelay {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly targetPort: number;
  port = 0;

  constructor(targetPort: number) {
    this.targetPort = targetPort;
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  async up(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.targetPort, '127.0.0.1');
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((res, rej) => {
      server.once('error', rej);
      server.listen(this.port, '127.0.0.1', () => res());
    });
    this.port = (server.address() as { port: number }).port;
    this.server = server;
  }

  /** Every open connection destroyed (no TLS close_notify, no HTTP end). Returns how many. */
  cut(): number {
    const n = this.sockets.size;
    for (const s of this.sockets) s.destroy();
    return n;
  }

  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    this.cut();
    if (server) await new Promise<void>((res) => server.close(() => res()));
  }
}

/**
 * An HTTPS proxy in front of the real API server that answers chosen requests with an overload
 * status the server itself gives only under real overload (503, or 429 with Retry-After, as API
 * Priority and Fairness does), and streams everything else through untouched (watches included).
 * Its certificate is signed by the cluster CA, so clients keep verifying. Bearer tokens only.
 */
export interface KubeFaultProxy {
  url: string;
  /** The next `times` requests of `method` whose path matches answer `status` (a Status body). */
  failNext(
    method: string,
    path: RegExp,
    status: 429 | 503,
    times?: number,
    when?: (query: URLSearchParams) => boolean,
  ): void;
  /** Requests seen, in order: "METHOD path?query". */
  seen: string[];
  close(): Promise<void>;
}

export async function startKubeFaultProxy(kube: KubeApiServer): Promise<KubeFaultProxy> {
  const cert = await kube.cp.pki.issue('fault-proxy', { cn: 'fault-proxy', ips: ['127.0.0.1'] });
  const ca = readFileSync(kube.cp.pki.ca.cert);
  const rules: {
    method: string;
    path: RegExp;
    status: number;
    left: number;
    when?: (q: URLSearchParams) => boolean;
  }[] = [];
  const seen: string[] = [];
  const server = createHttpsServer(
    { cert: readFileSync(cert.cert), key: readFileSync(cert.key) },
    (req: IncomingMessage, res: ServerResponse) => {
      const url = new URL(req.url ?? '/', 'https://proxy');
      seen.push(`${req.method} ${url.pathname}${url.search}`);
      const rule = rules.find(
        (r) =>
          r.left > 0 &&
          r.method === req.method &&
          r.path.test(url.pathname) &&
          (r.when?.(url.searchParams) ?? true),
      );
      if (rule) {
        rule.left--;
        const reason = rule.status === 429 ? 'TooManyRequests' : 'ServiceUnavailable';
        const body = JSON.stringify({
          kind: 'Status',
          apiVersion: 'v1',
          metadata: {},
          status: 'Failure',
          message: `fault proxy: ${reason}`,
          reason,
          code: rule.status,
        });
        res.writeHead(rule.status, {
          'content-type': 'application/json',
          ...(rule.status === 429 ? { 'retry-after': '1' } : {}),
        });
        req.resume();
        res.end(body);
        return;
      }
      const up = httpsRequest(
        {
          host: '127.0.0.1',
          port: kube.cp.apiPort,
          method: req.method,
          path: req.url,
          headers: { ...req.headers, host: `127.0.0.1:${kube.cp.apiPort}` },
          ca,
        },
        (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.flushHeaders(); // a watch answers its headers long before any event
          answer.pipe(res);
        },
      );
      up.on('error', () => res.destroy());
      res.on('close', () => up.destroy());
      req.pipe(up);
    },
  );
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => res());
  });
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    failNext(method, path, status, times = 1, when) {
      rules.push({ method, path, status, left: times, ...(when ? { when } : {}) });
    },
    close: () =>
      new Promise<void>((res) => {
        server.closeAllConnections();
        server.close(() => res());
      }),
  };
}

/** Polls until cond() holds; fails the test naming what it waited for. */
export async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A pod's identity as an allocation records it (the CNI's K8S_POD_NAMESPACE/NAME/UID). */
export const podRef = (p: V1Pod) => ({
  namespace: p.metadata!.namespace!,
  name: p.metadata!.name!,
  uid: p.metadata!.uid!,
});
