#!/usr/bin/env node
// vpc-ipamd: validate the environment, build the cloud provider, rebuild the pool from checkpoint +
// cloud, serve the socket API and metrics; on SIGTERM/SIGINT drain and exit with a consistent checkpoint.

import type { Server } from 'node:http';
import { installCrashPolicy } from '../lib/crash-policy.ts';
import { createLogger, type Logger, logDestination } from '../lib/log.ts';
import { spawnRunner } from '../netutils/exec.ts';
import { hostVethLinks, listHostVeths } from '../netutils/host-veths.ts';
import { createIpTool } from '../netutils/ip.ts';
import { CONNMARK_BIT } from '../netutils/names.ts';
import type { CloudProvider, SubnetInfo } from '../providers/types.ts';
import { ConfigError, type DaemonConfig, loadConfig } from './config.ts';
import { Daemon, type NodeSetupHook } from './daemon.ts';
import {
  type IntrospectionAddress,
  ipamdEnvView,
  networkEnvView,
  startIntrospectionServer,
} from './introspection.ts';
import { installConflist } from './k8s/cni-files.ts';
import { loadKubernetesSettings } from './k8s/env.ts';
import { DaemonMetrics, startMetricsServer } from './metrics.ts';
import { createProvider } from './provider-factory.ts';
import { type SocketServer, startSocketServer } from './server.ts';
import { daemonTakeoverOptions, podRoutesReader } from './takeover/index.ts';

export interface RunningDaemon {
  daemon: Daemon;
  socket: SocketServer;
  metricsServer: Server | null;
  metrics: DaemonMetrics;
  introspectionServer: Server | null;
  /** Drain and stop everything. */
  shutdown(reason: string): Promise<void>;
}

/** Loads the data-plane engineer's node setup (src/ipam-daemon/node-setup/), if it is built in. */
async function loadNodeSetup(config: DaemonConfig, log: Logger): Promise<NodeSetupHook | undefined> {
  if (!config.nodeSetup) {
    log.warn(
      'VPC_IPAM_NODE_SETUP=false: node networking (interfaces, routes, SNAT) is not configured by this daemon',
    );
    return undefined;
  }
  let mod: { createNodeSetup?: (o: { config: DaemonConfig; logger: Logger }) => NodeSetupHook };
  try {
    // A literal path: the image's bundle (scripts/bundle-daemon.ts) must contain it.
    mod = (await import('./node-setup/index.ts')) as unknown as typeof mod;
  } catch (err) {
    log.warn(
      { err: (err as Error).message },
      'node setup module not available; node networking is not configured',
    );
    return undefined;
  }
  return mod.createNodeSetup?.({ config, logger: log.child({ component: 'node-setup' }) });
}

/**
 * ENABLE_SUBNET_DISCOVERY: the tagged subnets of the node's VPC and zone, most free addresses first
 * (found at start; the daemon re-ranks them before each new interface). As in the AWS VPC CNI, a failed DescribeSubnets (e.g. no IAM permission)
 * falls back to the node's subnet (null); a node whose every candidate is excluded cannot start.
 */
async function discoverPodSubnets(provider: CloudProvider, log: Logger): Promise<string[] | null> {
  if (!provider.discoverPodSubnets) return null;
  let found: SubnetInfo[];
  try {
    found = await provider.discoverPodSubnets();
  } catch (err) {
    log.warn(
      { err: (err as Error).message },
      "subnet discovery failed; pod interfaces use the node's subnet",
    );
    return null;
  }
  if (found.length === 0) {
    throw new Error(
      "ENABLE_SUBNET_DISCOVERY: no usable subnet for pod interfaces (the node's subnet is tagged kubernetes.io/role/cni=0 and no other subnet of its zone is tagged for pods); tag one, set POD_SUBNET_IDS or ENABLE_SUBNET_DISCOVERY=false",
    );
  }
  log.info(
    { subnets: found.map((s) => ({ id: s.id, availableIps: s.availableIps })) },
    'subnet discovery: pod subnets, most free addresses first',
  );
  return found.map((s) => s.id);
}

/** The AWS-shaped introspection endpoint; a bind failure is logged, never fatal (it is for tools). */
async function startIntrospection(
  config: DaemonConfig,
  address: IntrospectionAddress,
  daemon: Daemon,
  networkConfig: string | null,
  log: Logger,
): Promise<Server | null> {
  try {
    const server = await startIntrospectionServer(
      {
        status: () => daemon.status(),
        list: () => daemon.list(),
        ipamdEnv: ipamdEnvView(config, networkConfig !== null),
        networkEnv: networkEnvView(config, CONNMARK_BIT),
        networkConfig,
      },
      address,
    );
    log.info({ address }, 'introspection listening');
    return server;
  } catch (err) {
    log.warn({ err: (err as Error).message, address }, 'introspection endpoint not started');
    return null;
  }
}

export async function runDaemon(config: DaemonConfig, log: Logger): Promise<RunningDaemon> {
  for (const d of config.derivedDefaults ?? []) log.info({ default: d }, 'derived default');
  const metrics = new DaemonMetrics();
  if (config.awsCniMetrics) metrics.enableAwsCniAliases();
  const provider = await createProvider(config, metrics);
  const nodeSetup = await loadNodeSetup(config, log);
  // Kubernetes side (k8s/): only with NODE_NAME. Custom networking overrides the pod subnets.
  const k8sSettings = config.kubernetes.nodeName
    ? loadKubernetesSettings(process.env, {
        nodeName: config.kubernetes.nodeName,
        enablePodWatch: config.kubernetes.enablePodWatch,
      })
    : null;
  // The Kubernetes client is a large module tree (~0.5 s of CPU to load): load it only when the
  // daemon talks to the API, so a restart without it (and the CLI's tools) is not slowed by it.
  const k8sModule = k8sSettings ? await import('./k8s/integration.ts') : null;
  const custom = k8sSettings?.customNetworking
    ? await k8sModule!.resolveCustomNetworking({
        settings: k8sSettings,
        logger: log,
        fallbackZone: (await provider.describeNode()).availabilityZone,
      })
    : null;
  if (custom) {
    config.podSubnetIds = custom.subnetIds;
    if (custom.securityGroupIds.length > 0) config.podSecurityGroupIds = custom.securityGroupIds;
  }
  // Discovered (not configured) subnets are re-ranked by free addresses before each new interface.
  let discovered = false;
  if (!custom && config.podSubnetIds === null && config.subnetDiscovery && !config.pool.noProvisioning) {
    config.podSubnetIds = await discoverPodSubnets(provider, log);
    discovered = config.podSubnetIds !== null;
  }
  const ipTool = createIpTool(spawnRunner);
  const takeover = daemonTakeoverOptions(config, ipTool);
  const daemon = new Daemon({
    provider,
    pool: config.pool,
    clusterName: config.clusterName,
    podSubnetIds: config.podSubnetIds,
    podSecurityGroupIds: config.podSecurityGroupIds,
    checkpointPath: config.checkpointPath,
    logger: log,
    ...(nodeSetup ? { nodeSetup } : {}),
    // The daemon runs in the node's netns (host network): the pods' host routes are right here.
    podRoutes: podRoutesReader(config, ipTool),
    hostVeths: () => listHostVeths(ipTool),
    vethLinks: hostVethLinks(ipTool),
    gcGraceMs: config.gcGraceMs,
    socketPath: config.socketPath,
    ...(takeover ? { takeover } : {}),
    vethPrefix: config.vethPrefix,
    ...(discovered ? { rankSubnetsByFreeIps: true } : {}),
    podEgress: { externalSnat: config.snat.externalSnat, excludeCidrs: config.snat.excludeCidrs },
  });
  metrics.attach(daemon);
  await daemon.start();
  const k8s = k8sSettings
    ? await k8sModule!.startKubernetesIntegration({
        daemon,
        settings: k8sSettings,
        logger: log.child({ component: 'k8s' }),
        networkConfig: custom?.name ?? null,
      })
    : null;
  metrics.updatePool(daemon.status());
  const socket = await startSocketServer({
    socketPath: config.socketPath,
    daemon,
    logger: log,
    onRequest: (route, status, ms) => metrics.onRequest(route, status, ms),
    applyReportTimeoutMs: config.cniApplyTimeoutMs,
  });
  if (config.cniConflist) {
    // Only now, with the socket answering: until the conflist exists kubelet keeps the node NotReady
    // and starts no pod sandbox, so no pod gets "try again later" from a daemon still starting.
    const written = installConflist(config.cniConflist.source, config.cniConflist.target);
    log.info({ conflist: written }, 'CNI conflist installed: the node can report Ready');
  }
  let metricsServer: Server | null = null;
  if (config.metrics) {
    metricsServer = await startMetricsServer(metrics, config.metrics.address, config.metrics.port, () =>
      metrics.updatePool(daemon.status()),
    );
    log.info({ address: config.metrics.address, port: config.metrics.port }, 'metrics listening');
  }
  const introspectionServer = config.introspection
    ? await startIntrospection(config, config.introspection, daemon, custom?.name ?? null, log)
    : null;
  let stopping: Promise<void> | null = null;
  return {
    daemon,
    socket,
    metricsServer,
    metrics,
    introspectionServer,
    shutdown(reason) {
      stopping ??= (async () => {
        log.info({ reason }, 'draining');
        await k8s?.stop();
        const closed = socket.close();
        await daemon.stop(config.shutdownTimeoutMs);
        await Promise.race([closed, new Promise((r) => setTimeout(r, config.shutdownTimeoutMs).unref())]);
        socket.server.closeAllConnections();
        metricsServer?.close();
        metricsServer?.closeAllConnections();
        introspectionServer?.close();
        introspectionServer?.closeAllConnections();
      })();
      return stopping;
    },
  };
}

async function main(): Promise<void> {
  let config: DaemonConfig;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`vpc-ipamd: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  let destination: ReturnType<typeof logDestination>;
  try {
    destination = logDestination(config.logFile);
  } catch (err) {
    process.stderr.write(
      `vpc-ipamd: AWS_VPC_K8S_CNI_LOG_FILE=${config.logFile}: ${(err as Error).message}\n`,
    );
    process.exit(2);
  }
  const log = createLogger('vpc-ipamd', destination);
  log.level = config.logLevel;
  installCrashPolicy(log);
  let running: RunningDaemon;
  try {
    running = await runDaemon(config, log);
  } catch (err) {
    log.fatal({ err }, 'startup failed');
    process.exit(1);
  }
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.once(sig, () => {
      running.shutdown(sig).then(
        () => process.exit(0),
        (err) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    });
  }
}

if (import.meta.main) await main();
