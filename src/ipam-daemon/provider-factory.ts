// Builds the cloud provider the config asks for. The provider modules are loaded on demand so a
// node only loads the SDK of its own cloud (literal import paths: the image's bundle,
// scripts/bundle-daemon.ts, turns each into a chunk loaded just as late).

import { readOnlyProvider } from '../providers/read-only.ts';
import type { ApiCallObserver, CloudProvider } from '../providers/types.ts';
import type { DaemonConfig } from './config.ts';

export async function createProvider(
  config: DaemonConfig,
  observer: ApiCallObserver,
): Promise<CloudProvider> {
  const provider = await createCloudProvider(config, observer);
  return config.pool.noProvisioning
    ? readOnlyProvider(provider, 'DISABLE_NETWORK_RESOURCE_PROVISIONING=true')
    : provider;
}

async function createCloudProvider(config: DaemonConfig, observer: ApiCallObserver): Promise<CloudProvider> {
  if (config.cloud === 'aws') {
    const mod = (await import('../providers/aws/index.ts')) as unknown as {
      createAwsProvider(options: Record<string, unknown>): CloudProvider;
    };
    const region =
      config.aws.region ?? (await regionFromImds(config.aws.imdsEndpoint, config.aws.imdsTimeoutMs));
    const options: Record<string, unknown> = { clusterName: config.clusterName, observer, region };
    if (config.aws.pickAddresses) options.pickAddresses = true;
    if (Object.keys(config.extraInterfaceTags).length > 0) options.extraTags = config.extraInterfaceTags;
    if (config.aws.ec2Endpoint) options.ec2Endpoint = config.aws.ec2Endpoint;
    if (config.aws.imdsEndpoint) options.imdsEndpoint = config.aws.imdsEndpoint;
    options.imdsTimeoutMs = config.aws.imdsTimeoutMs;
    return mod.createAwsProvider(options);
  }
  const mod = (await import('../providers/azure/index.ts')) as unknown as {
    createAzureProvider?(options: Record<string, unknown>): CloudProvider;
  };
  if (!mod.createAzureProvider) throw new Error('the Azure provider is not available in this build');
  // The credential defaults to workload / managed identity inside the provider.
  const azure: Record<string, unknown> = { clusterName: config.clusterName, observer };
  if (config.azure?.armEndpoint) azure.armEndpoint = config.azure.armEndpoint;
  if (config.aws.imdsEndpoint) azure.imdsEndpoint = config.aws.imdsEndpoint;
  if (config.azure?.subscriptionId) azure.subscriptionId = config.azure.subscriptionId;
  if (config.azure?.resourceGroup) azure.resourceGroup = config.azure.resourceGroup;
  return mod.createAzureProvider(azure);
}

/** The region from instance metadata (IMDSv2), as the AWS VPC CNI does when AWS_REGION is unset. */
async function regionFromImds(endpoint: string | null, timeoutMs: number): Promise<string> {
  const { MetadataService } = await import('@aws-sdk/ec2-metadata-service');
  const imds = new MetadataService({
    ...(endpoint ? { endpoint } : {}),
    httpOptions: { timeout: timeoutMs },
  });
  const region = (await imds.request('/latest/meta-data/placement/region', {})).trim();
  if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) {
    throw new Error(`instance metadata returned an invalid region ${JSON.stringify(region)}; set AWS_REGION`);
  }
  return region;
}
