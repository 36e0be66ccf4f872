// DISABLE_NETWORK_RESOURCE_PROVISIONING: a provider that refuses every mutating call before it
// reaches the cloud. The daemon plans no cloud action in that mode (pool-loop.ts); this makes "no
// mutating call" hold even if some path tried one.
import { OtherProviderError } from './errors.ts';
import type { CloudProvider } from './types.ts';

const MUTATING = ['createInterface', 'assignIps', 'unassignIps', 'deleteInterface'] as const;

export function readOnlyProvider<P extends CloudProvider>(provider: P, why: string): P {
  const refuse = (op: string) => () =>
    Promise.reject(new OtherProviderError(`${op} refused: ${why}`, { cloudCode: 'ProvisioningDisabled' }));
  const overrides = Object.fromEntries(MUTATING.map((op) => [op, refuse(op)]));
  return new Proxy(provider, {
    get(target, prop, receiver) {
      if (typeof prop === 'string' && prop in overrides) return overrides[prop];
      return Reflect.get(target, prop, receiver);
    },
  });
}
