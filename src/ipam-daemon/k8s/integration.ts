// Wires the daemon to Kubernetes: NodeIPAMStatus publishing on 'pool-changed', Events on 'no-ip'
// and on 'drift' (a pod lost its address), and the pod watcher that releases allocations of pods
// that are gone. Nothing here can crash the
// daemon: API failures are logged and retried; the data path never waits on the API server.
import type { EventEmitter } from 'node:events';
import { CoreV1Api, CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../lib/log.ts';
import type { PoolStatus } from '../api-types.ts';
import type { KubernetesSettings } from './env.ts';
import { loadKubeConfig } from './kube-client.ts';
import { resolvePodNetwork } from './network-config.ts';
import { type DriftOccurrence, NodeEventRecorder, type NoIpOccurrence } from './node-events.ts';
import { NodeStatusPublisher } from './node-status.ts';
import { SchedulabilityWatch } from './node-watch.ts';
import { type AllocatedPod, PodIpAnnotator } from './pod-annotator.ts';
import { type AllocationSource, createNodePodsReflector, PodWatcher } from './pod-watcher.ts';

/** What the integration needs from the Daemon class (it satisfies this). */
export type DaemonLike = AllocationSource &
  Pick<EventEmitter, 'on' | 'off'> & {
    status(): PoolStatus;
    /** The Node's spec.unschedulable changed (AWS_MANAGE_ENIS_NON_SCHEDULABLE). */
    setNodeUnschedulable?(unschedulable: boolean): void;
  };

export interface KubernetesIntegration {
  publisher: NodeStatusPublisher;
  events: NodeEventRecorder;
  podWatcher: PodWatcher | null;
  /** ANNOTATE_POD_IP. */
  annotator: PodIpAnnotator | null;
  stop(): Promise<void>;
}

export interface StartOptions {
  daemon: DaemonLike;
  settings: KubernetesSettings;
  logger: Logger;
  kubeConfig?: KubeConfig;
  /** The PodNetworkConfig in use, shown in the status (from resolveCustomNetworking). */
  networkConfig?: string | null;
  podGcIntervalMs?: number;
  /** How often the Node is read for spec.unschedulable (default 10 s). */
  nodeWatchIntervalMs?: number;
}

export async function startKubernetesIntegration(opts: StartOptions): Promise<KubernetesIntegration> {
  const { daemon, settings, logger } = opts;
  const kc = opts.kubeConfig ?? loadKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  let nodeUid: string | null = null;
  try {
    nodeUid = (await core.readNode({ name: settings.nodeName })).metadata?.uid ?? null;
  } catch (err) {
    logger.warn(
      { err: String(err), node: settings.nodeName },
      'could not read this Node; status and events go without its uid',
    );
  }
  const publisher = new NodeStatusPublisher({
    custom,
    nodeName: settings.nodeName,
    nodeUid,
    intervalMs: settings.statusIntervalMs,
    networkConfig: opts.networkConfig ?? null,
    logger,
  });
  const events = new NodeEventRecorder({ core, nodeName: settings.nodeName, nodeUid, logger });
  const onPool = () => publisher.update(daemon.status());
  const onNoIp = (o: NoIpOccurrence) => events.noIp(o);
  const onDrift = (o: DriftOccurrence) => events.drift(o);
  daemon.on('pool-changed', onPool);
  daemon.on('no-ip', onNoIp);
  daemon.on('drift', onDrift);
  onPool();

  const annotator = settings.annotatePodIp ? new PodIpAnnotator({ core, logger }) : null;
  const onAllocated = (a: AllocatedPod) => annotator?.onAllocated(a);
  if (annotator) daemon.on('allocated', onAllocated);

  let podWatcher: PodWatcher | null = null;
  if (settings.enablePodWatch) {
    podWatcher = new PodWatcher({
      nodeName: settings.nodeName,
      allocations: daemon,
      logger,
      reflector: createNodePodsReflector(kc, core, settings.nodeName, logger),
      policy: { graceMs: settings.podGcGraceMs },
      ...(opts.podGcIntervalMs ? { intervalMs: opts.podGcIntervalMs } : {}),
    });
    podWatcher.start();
  }
  const schedulability = daemon.setNodeUnschedulable
    ? new SchedulabilityWatch({
        core,
        nodeName: settings.nodeName,
        intervalMs: opts.nodeWatchIntervalMs ?? 10_000,
        logger,
        onChange: (u) => daemon.setNodeUnschedulable?.(u),
      })
    : null;
  schedulability?.start();
  return {
    publisher,
    events,
    podWatcher,
    annotator,
    async stop() {
      daemon.off('allocated', onAllocated);
      await annotator?.flush();
      daemon.off('pool-changed', onPool);
      daemon.off('no-ip', onNoIp);
      daemon.off('drift', onDrift);
      await podWatcher?.stop();
      await schedulability?.stop();
      await publisher.flush();
      await publisher.stop();
      await events.stop();
    },
  };
}

/** Custom networking, resolved before the daemon starts: the subnets and security groups to use. */
export async function resolveCustomNetworking(opts: {
  settings: KubernetesSettings;
  logger: Logger;
  kubeConfig?: KubeConfig;
  fallbackZone?: string | null;
}): Promise<{ name: string; subnetIds: string[]; securityGroupIds: string[] } | null> {
  if (!opts.settings.customNetworking) return null;
  const kc = opts.kubeConfig ?? loadKubeConfig();
  const { config, reason } = await resolvePodNetwork({
    core: kc.makeApiClient(CoreV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    nodeName: opts.settings.nodeName,
    labelKey: opts.settings.networkConfigLabel,
    annotationKey: opts.settings.networkConfigAnnotation,
    fallbackZone: opts.fallbackZone ?? null,
  });
  opts.logger.info(
    { config: config.name, reason, subnets: config.subnetIds },
    'custom networking: selected PodNetworkConfig',
  );
  return { name: config.name, subnetIds: config.subnetIds, securityGroupIds: config.securityGroupIds };
}
