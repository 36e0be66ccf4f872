#!/usr/bin/env node
// vpc-ipam-janitor: one active replica (elected through a Lease) deletes leaked pod interfaces.
import { hostname } from 'node:os';
import { CoordinationV1Api, CoreV1Api } from '@kubernetes/client-node';
import { loadKubeConfig } from '../ipam-daemon/k8s/kube-client.ts';
import { installCrashPolicy } from '../lib/crash-policy.ts';
import { createLogger } from '../lib/log.ts';
import type { CloudProvider } from '../providers/types.ts';
import { loadJanitorConfig } from './config.ts';
import {
  type CloudInstanceLookup,
  CloudLiveness,
  CombinedLiveness,
  type InstanceLiveness,
  KubernetesNodeLiveness,
} from './instance-liveness.ts';
import { Janitor } from './janitor.ts';
import { LeaseElector } from './lease-elector.ts';

async function createProvider(config: ReturnType<typeof loadJanitorConfig>): Promise<CloudProvider> {
  if (config.cloud === 'aws') {
    const { createAwsProvider } = await import('../providers/aws/index.ts');
    return createAwsProvider({
      region: config.awsRegion!,
      clusterName: config.clusterName,
      ...(config.ec2Endpoint ? { ec2Endpoint: config.ec2Endpoint } : {}),
    });
  }
  const { createAzureProvider, createAzureCredential } = await import('../providers/azure/index.ts');
  return createAzureProvider({ credential: createAzureCredential(), clusterName: config.clusterName });
}

async function main(): Promise<void> {
  let config: ReturnType<typeof loadJanitorConfig>;
  try {
    config = loadJanitorConfig(process.env, hostname());
  } catch (err) {
    process.stderr.write(`vpc-ipam-janitor: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const logger = createLogger('janitor');
  installCrashPolicy(logger);
  const kc = loadKubeConfig();
  const core = kc.makeApiClient(CoreV1Api);
  const provider = await createProvider(config);
  // The cloud is asked when the provider can tell; Kubernetes Nodes are always consulted.
  const sources: InstanceLiveness[] = [new KubernetesNodeLiveness(core)];
  const lookup = provider as CloudProvider & Partial<CloudInstanceLookup>;
  if (typeof lookup.instancesExist === 'function') {
    sources.push(new CloudLiveness(lookup as CloudInstanceLookup));
  }
  const elector = new LeaseElector({
    api: kc.makeApiClient(CoordinationV1Api),
    namespace: config.lease.namespace,
    name: config.lease.name,
    identity: config.lease.identity,
    leaseDurationSeconds: config.lease.durationSeconds,
    renewDeadlineMs: config.lease.renewDeadlineMs,
    retryPeriodMs: config.lease.retryPeriodMs,
    logger,
  });
  const janitor = new Janitor({
    cloud: provider,
    liveness: new CombinedLiveness(sources),
    leadership: elector,
    clusterName: config.clusterName,
    graceMs: config.graceMs,
    dryRun: config.dryRun,
    logger,
  });
  let sweeping: Promise<unknown> = Promise.resolve();
  const runSweep = () => {
    sweeping = sweeping
      .then(() => janitor.sweep())
      .then((r) => {
        if (!r.skipped || r.deleted.length > 0) logger.info({ ...r }, 'sweep done');
      })
      .catch((err: unknown) => logger.warn({ err: String(err) }, 'sweep failed'));
  };
  elector.on('started-leading', () => {
    logger.info({ identity: config.lease.identity }, 'leading: sweeping');
    runSweep();
  });
  elector.on('stopped-leading', () => logger.info('no longer leading: standing by'));
  elector.start();
  const timer = setInterval(runSweep, config.intervalMs);

  const shutdown = async (signal: string) => {
    logger.info({ signal }, 'shutting down');
    clearInterval(timer);
    await sweeping;
    await elector.stop();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

await main();
