// One Azure test bed: a throwaway CA, the HTTPS ARM fake seeded with a VNet and one VM (NICs in a
// node subnet), and the Azure IMDS fake answering for that VM from the ARM fake's live state.
// The CA is trusted in this process; child processes get NODE_EXTRA_CA_CERTS=<caPath>.
import { randomUUID } from 'node:crypto';
import type { AzureProvider } from '../../src/providers/azure/azure-provider.ts';
import { type AzureProviderOptions, createAzureProvider } from '../../src/providers/azure/index.ts';
import { type FakeArmOptions, FakeArmServer } from './arm-server.ts';
import { createTestCertificates, type TestCertificates, trustCaInProcess } from './arm-tls.ts';
import { type FakeAzureImds, startFakeAzureImds } from './imds-azure.ts';

export const TEST_TOKEN = 'vpc-ipam-test-token';

/** A TokenCredential handing out a fixed bearer token (what the fake accepts). */
export function staticTokenCredential(token: string = TEST_TOKEN) {
  return {
    getToken: async () => ({ token, expiresOnTimestamp: Date.now() + 3_600_000 }),
  };
}

export interface AzureTestbedOptions {
  /** Node subnet prefix (default 10.240.0.0/24). */
  subnetPrefix?: string;
  vnetPrefixes?: string[];
  /** NICs on the VM (default 2). */
  nicCount?: number;
  zone?: string;
  arm?: Partial<Omit<FakeArmOptions, 'certPem' | 'keyPem'>>;
}

export interface AzureTestbed {
  certs: TestCertificates;
  arm: FakeArmServer;
  imds: FakeAzureImds;
  subscriptionId: string;
  resourceGroup: string;
  location: string;
  vnetId: string;
  subnetId: string;
  vm: { resourceId: string; vmId: string; nicIds: string[] };
  nsgId: string;
  /** A provider wired to the fakes; stopped by close(). */
  provider(overrides?: Partial<AzureProviderOptions>): AzureProvider;
  /**
   * Env for a child process (the daemon) to reach the fakes, trust the CA, and get its ARM token
   * from the IMDS fake through the production ManagedIdentityCredential.
   */
  childEnv(): Record<string, string>;
  close(): Promise<void>;
}

export async function startAzureTestbed(o: AzureTestbedOptions = {}): Promise<AzureTestbed> {
  const certs = await createTestCertificates();
  trustCaInProcess(certs.caPem);
  const subscriptionId = randomUUID();
  const resourceGroup = `mc_vpcipam_${randomUUID().slice(0, 8)}`;
  const location = 'westeurope';
  const arm = await FakeArmServer.start(subscriptionId, {
    certPem: certs.certPem,
    keyPem: certs.keyPem,
    acceptedTokens: [TEST_TOKEN],
    lroPolls: 1,
    ...o.arm,
  });
  const nsgId = `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.Network/networkSecurityGroups/aks-agentpool-nsg`;
  const { id: vnetId, subnetIds } = arm.addVnet({
    resourceGroup,
    name: 'aks-vnet',
    location,
    addressPrefixes: o.vnetPrefixes ?? ['10.240.0.0/16', '10.241.0.0/16'],
    subnets: [{ name: 'aks-subnet', addressPrefix: o.subnetPrefix ?? '10.240.0.0/24' }],
  });
  const subnetId = subnetIds[0]!;
  const vm = arm.addVm({
    resourceGroup,
    name: 'aks-nodepool1-12345678-vm0',
    location,
    zone: o.zone ?? '2',
    vmSize: 'Standard_D4s_v5',
    nics: Array.from({ length: o.nicCount ?? 2 }, (_, i) => ({
      name: `aks-nodepool1-12345678-nic-${i}`,
      subnetId,
      nsgId,
    })),
  });
  // The IMDS managed-identity endpoint hands out the token the ARM fake accepts, so the production
  // ManagedIdentityCredential works in child processes (AZURE_POD_IDENTITY_AUTHORITY_HOST).
  const imds = await startFakeAzureImds({
    metadata: () => arm.instanceMetadata(vm.resourceId),
    accessToken: TEST_TOKEN,
  });
  const providers: AzureProvider[] = [];
  return {
    certs,
    arm,
    imds,
    subscriptionId,
    resourceGroup,
    location,
    vnetId,
    subnetId,
    vm,
    nsgId,
    provider(overrides = {}) {
      const p = createAzureProvider({
        credential: staticTokenCredential(),
        armEndpoint: arm.url,
        imdsEndpoint: imds.url,
        clusterName: 'azure-test',
        lroPollIntervalMs: 10,
        retry: { baseDelayMs: 10, maxDelayMs: 50 },
        ...overrides,
      });
      providers.push(p);
      return p;
    },
    childEnv() {
      return {
        NODE_EXTRA_CA_CERTS: certs.caPath,
        CLOUD_PROVIDER: 'azure',
        VPC_IPAM_ARM_ENDPOINT: arm.url,
        VPC_IPAM_IMDS_ENDPOINT: imds.url,
        AZURE_POD_IDENTITY_AUTHORITY_HOST: imds.url,
      };
    },
    async close() {
      await Promise.all(providers.map((p) => p.stop()));
      await imds.close();
      await arm.close();
      await certs.cleanup();
    },
  };
}
