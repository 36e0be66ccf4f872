// Prometheus metrics (prom-client, own registry) served on METRICS_ADDRESS:METRICS_PORT
// (127.0.0.1 by default: pool internals are not for the whole network).

import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ApiCallEvent, ApiCallObserver } from '../providers/types.ts';
import type { PoolStatus } from './api-types.ts';
import type { Daemon } from './daemon.ts';

export class DaemonMetrics implements ApiCallObserver {
  readonly registry = new Registry();
  private readonly interfaceIps = new Gauge({
    name: 'vpc_ipam_interface_ips',
    help: 'Secondary IPs per interface by state (total, assigned, cooling, free)',
    labelNames: ['interface_id', 'device_index', 'state'] as const,
    registers: [this.registry],
  });
  private readonly poolIps = new Gauge({
    name: 'vpc_ipam_pool_ips',
    help: 'Secondary IPs on the node by state (total, assigned, cooling, free)',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  private readonly maxPods = new Gauge({
    name: 'vpc_ipam_max_pods',
    help: 'Pods this node can hold: interfaces x (IPs per interface - 1) + 2, or MAX_PODS if lower',
    registers: [this.registry],
  });
  readonly allocations = new Counter({
    name: 'vpc_ipam_allocations_total',
    help: 'Allocation requests answered, by result (ok, no_ip, error)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly releases = new Counter({
    name: 'vpc_ipam_releases_total',
    help: 'IPs released by pods',
    registers: [this.registry],
  });
  readonly allocationLatency = new Histogram({
    name: 'vpc_ipam_allocation_duration_seconds',
    help: 'Time to answer an allocation (including any wait for the pool to grow)',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly noIp = new Counter({
    name: 'vpc_ipam_no_ip_total',
    help: 'Allocations refused for lack of an IP, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly driftRepairs = new Counter({
    name: 'vpc_ipam_drift_repairs_total',
    help: 'Repairs after the cloud changed behind the daemon (drift resync), by kind: ip-removed, ip-lost (a pod lost its address), ip-regained, ip-added, ip-held (appeared but a running pod host route claims it), interface-removed, interface-added',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly resyncs = new Counter({
    name: 'vpc_ipam_resyncs_total',
    help: 'Drift resyncs (re-listing the node interfaces), by source (metadata, api) and outcome (ok, error)',
    labelNames: ['source', 'outcome'] as const,
    registers: [this.registry],
  });
  private readonly apiCalls = new Counter({
    name: 'vpc_ipam_cloud_api_calls_total',
    help: 'Cloud API call attempts by API and outcome (ok, throttled, error)',
    labelNames: ['cloud', 'api', 'outcome'] as const,
    registers: [this.registry],
  });
  private readonly apiLatency = new Histogram({
    name: 'vpc_ipam_cloud_api_duration_seconds',
    help: 'Cloud API call attempt latency by API',
    labelNames: ['cloud', 'api'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  /**
   * VPC_IPAM_AWSCNI_METRICS: also serve the AWS VPC CNI's names for existing aws-node dashboards.
   * Each alias is filled at scrape time from the vpc_ipam_* metric it mirrors (AWS_CNI_ALIASES),
   * never counted on its own, so the two names always agree and nothing is counted twice.
   */
  enableAwsCniAliases(): void {
    for (const alias of AWS_CNI_ALIASES) {
      const source = this.registry.getSingleMetric(alias.from);
      if (!source) throw new Error(`metrics.ts bug: ${alias.from} is not registered`);
      const reduce = alias.reduce;
      const fill = async (m: Gauge<string> | Counter<string>) => {
        const values = (await source.get()).values;
        m.reset();
        for (const [labels, value] of reduce(values)) {
          if (m instanceof Counter) m.inc(labels, value);
          else m.set(labels, value);
        }
      };
      const config = {
        name: alias.name,
        help: `${alias.help} (alias of ${alias.from}, the AWS VPC CNI's name)`,
        labelNames: alias.labelNames,
        registers: [this.registry],
      };
      if (alias.type === 'counter') {
        new Counter({
          ...config,
          collect: async function (this: Counter<string>) {
            await fill(this);
          },
        });
      } else {
        new Gauge({
          ...config,
          collect: async function (this: Gauge<string>) {
            await fill(this);
          },
        });
      }
    }
  }

  /** ApiCallObserver: give this to the provider factory. */
  onCall(e: ApiCallEvent): void {
    this.apiCalls.inc({ cloud: e.cloud, api: e.api, outcome: e.outcome });
    this.apiLatency.observe({ cloud: e.cloud, api: e.api }, e.durationMs / 1000);
  }

  updatePool(s: PoolStatus): void {
    this.maxPods.set(s.maxPods);
    for (const state of ['total', 'assigned', 'cooling', 'free'] as const)
      this.poolIps.set({ state }, s[state]);
    this.interfaceIps.reset();
    for (const i of s.interfaces) {
      for (const state of ['total', 'assigned', 'cooling', 'free'] as const) {
        this.interfaceIps.set(
          { interface_id: i.interfaceId, device_index: String(i.deviceIndex), state },
          i[state],
        );
      }
    }
  }

  /** Subscribe to the daemon's events. */
  attach(daemon: Daemon): void {
    daemon.on('released', () => this.releases.inc());
    daemon.on('no-ip', (e: { reason: string }) => this.noIp.inc({ reason: e.reason }));
    daemon.on('pool-changed', (s: PoolStatus) => this.updatePool(s));
    daemon.on('drift', (e: { kind: string }) => this.driftRepairs.inc({ kind: e.kind }));
    daemon.on('resync', (e: { source: string; outcome: string }) =>
      this.resyncs.inc({ source: e.source, outcome: e.outcome }),
    );
  }

  /** Socket server hook: allocation outcomes and latency. */
  onRequest(route: string, status: number, durationMs: number): void {
    if (route !== '/v1/allocate') return;
    this.allocationLatency.observe(durationMs / 1000);
    this.allocations.inc({ result: status === 200 ? 'ok' : status === 503 ? 'no_ip' : 'error' });
  }
}

type MetricValue = { labels: Partial<Record<string, string | number>>; value: number };
type Labels = Record<string, string>;

/** Sum of `values` grouped by the labels `pick` returns (null: leave the value out). */
function groupSum(values: MetricValue[], pick: (v: MetricValue) => Labels | null): [Labels, number][] {
  const out = new Map<string, [Labels, number]>();
  for (const v of values) {
    const labels = pick(v);
    if (!labels) continue;
    const key = JSON.stringify(labels);
    const cur = out.get(key);
    out.set(key, [labels, (cur?.[1] ?? 0) + v.value]);
  }
  return [...out.values()];
}

/**
 * The awscni_* names and the vpc_ipam_* metric each is computed from (the AWS plugin's label
 * names kept). AWS names without a counterpart here (prefixes, trunk ENIs, its internal action
 * gauges and error counters) are not emitted: see docs/migrating-from-aws-vpc-cni.md.
 */
export const AWS_CNI_ALIASES: readonly {
  name: string;
  type: 'counter' | 'gauge';
  from: string;
  help: string;
  labelNames: string[];
  reduce: (values: MetricValue[]) => [Labels, number][];
}[] = [
  {
    name: 'awscni_total_ip_addresses',
    type: 'gauge',
    from: 'vpc_ipam_pool_ips',
    help: 'The total number of IP addresses',
    labelNames: [],
    reduce: (v) => groupSum(v, (x) => (x.labels.state === 'total' ? {} : null)),
  },
  {
    name: 'awscni_assigned_ip_addresses',
    type: 'gauge',
    from: 'vpc_ipam_pool_ips',
    help: 'The number of IP addresses assigned to pods',
    labelNames: [],
    reduce: (v) => groupSum(v, (x) => (x.labels.state === 'assigned' ? {} : null)),
  },
  {
    name: 'awscni_eni_allocated',
    type: 'gauge',
    from: 'vpc_ipam_interface_ips',
    help: 'The number of ENIs allocated',
    labelNames: [],
    reduce: (v) => [[{}, new Set(v.map((x) => x.labels.interface_id)).size]],
  },
  {
    name: 'awscni_assigned_ip_per_eni',
    type: 'gauge',
    from: 'vpc_ipam_interface_ips',
    help: 'The number of allocated ips partitioned by eni',
    labelNames: ['eni'],
    reduce: (v) =>
      groupSum(v, (x) => (x.labels.state === 'assigned' ? { eni: String(x.labels.interface_id) } : null)),
  },
  {
    name: 'awscni_add_ip_req_count',
    type: 'counter',
    from: 'vpc_ipam_allocations_total',
    help: 'The number of add IP address requests',
    labelNames: [],
    reduce: (v) => groupSum(v, () => ({})),
  },
  {
    name: 'awscni_del_ip_req_count',
    type: 'counter',
    from: 'vpc_ipam_releases_total',
    help: 'The number of delete IP address requests',
    labelNames: ['reason'],
    reduce: (v) => groupSum(v, () => ({ reason: 'PodDeleted' })),
  },
  {
    name: 'awscni_no_available_ip_addresses',
    type: 'counter',
    from: 'vpc_ipam_no_ip_total',
    help: 'The number of pod IP assignments that fail due to no available IP addresses',
    labelNames: [],
    reduce: (v) => groupSum(v, () => ({})),
  },
  {
    name: 'awscni_ec2api_req_count',
    type: 'counter',
    from: 'vpc_ipam_cloud_api_calls_total',
    help: 'The number of requests made to EC2 APIs by CNI',
    labelNames: ['fn'],
    reduce: (v) => groupSum(v, (x) => (x.labels.cloud === 'aws' ? { fn: String(x.labels.api) } : null)),
  },
  {
    name: 'awscni_ec2api_error_count',
    type: 'counter',
    from: 'vpc_ipam_cloud_api_calls_total',
    help: 'The number of failed EC2 APIs requests',
    labelNames: ['fn'],
    reduce: (v) =>
      groupSum(v, (x) =>
        x.labels.cloud === 'aws' && x.labels.outcome !== 'ok' ? { fn: String(x.labels.api) } : null,
      ),
  },
];

/** Limits of the metrics endpoint: a scraper needs one connection and a second or two. */
export interface MetricsServerLimits {
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  maxConnections: number;
}

export const METRICS_SERVER_LIMITS: MetricsServerLimits = {
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 32,
};

export async function startMetricsServer(
  metrics: DaemonMetrics,
  address: string,
  port: number,
  refresh: () => void,
  limits: Partial<MetricsServerLimits> & { connectionsCheckingIntervalMs?: number } = {},
): Promise<Server> {
  const l = { ...METRICS_SERVER_LIMITS, ...limits };
  // Slow or idle clients are cut off and connections capped: the endpoint may be reachable from
  // the node's network, and must not hold the daemon's memory or file descriptors.
  const options = {
    headersTimeout: l.headersTimeoutMs,
    requestTimeout: l.requestTimeoutMs,
    keepAliveTimeout: l.keepAliveTimeoutMs,
    maxHeaderSize: 8 * 1024,
    connectionsCheckingInterval: limits.connectionsCheckingIntervalMs ?? 1_000,
  };
  const server = createServer(options, (req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
      return;
    }
    try {
      refresh();
    } catch {
      // Not ready yet: serve what we have.
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'Content-Type': metrics.registry.contentType }).end(text),
      (err: Error) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${err.message}\n`),
    );
  });
  server.maxConnections = l.maxConnections;
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, address, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
