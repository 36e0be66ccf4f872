// Entry point of the Azure provider: createAzureProvider(options) and the production credential.
import { AzureProvider, type AzureProviderOptions } from './azure-provider.ts';

export type { AzureLimiterConfig } from './arm-budgets.ts';
export { DEFAULT_AZURE_LIMITS } from './arm-budgets.ts';
export type { AzureProviderOptions } from './azure-provider.ts';
export { AzureProvider, DEFAULT_ARM_ENDPOINT } from './azure-provider.ts';
export { createAzureCredential } from './credential.ts';
export { DEFAULT_AZURE_IMDS_ENDPOINT } from './imds.ts';

export function createAzureProvider(options: AzureProviderOptions): AzureProvider {
  return new AzureProvider(options);
}
