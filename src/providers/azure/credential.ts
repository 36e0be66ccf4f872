// The credential the daemon uses on a node: workload identity when the AKS webhook injected
// AZURE_FEDERATED_TOKEN_FILE (with AZURE_CLIENT_ID and AZURE_TENANT_ID), otherwise the VM's
// managed identity (user-assigned when AZURE_CLIENT_ID is set, else system-assigned) through IMDS.
// Unlike DefaultAzureCredential it never falls through to developer tools on a node.
import { ManagedIdentityCredential, type TokenCredential, WorkloadIdentityCredential } from '@azure/identity';

export function createAzureCredential(env: NodeJS.ProcessEnv = process.env): TokenCredential {
  if (env.AZURE_FEDERATED_TOKEN_FILE) {
    return new WorkloadIdentityCredential({
      ...(env.AZURE_CLIENT_ID ? { clientId: env.AZURE_CLIENT_ID } : {}),
      ...(env.AZURE_TENANT_ID ? { tenantId: env.AZURE_TENANT_ID } : {}),
      tokenFilePath: env.AZURE_FEDERATED_TOKEN_FILE,
    });
  }
  return env.AZURE_CLIENT_ID
    ? new ManagedIdentityCredential({ clientId: env.AZURE_CLIENT_ID })
    : new ManagedIdentityCredential();
}
