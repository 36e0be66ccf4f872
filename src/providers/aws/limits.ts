// Instance limits, enforced by us because emulators do not: interfaces per instance, private IPs
// per interface, device index choice. Pure functions.

import { LimitExceededError } from '../errors.ts';

export interface InstanceLimits {
  maxInterfaces: number;
  /** Private IPs per interface, its primary included. */
  ipsPerInterface: number;
}

/** Kubernetes max pods for routed ENI IPAM: every secondary IP, plus 2 host-network pods. */
export function maxPods(limits: InstanceLimits): number {
  return limits.maxInterfaces * (limits.ipsPerInterface - 1) + 2;
}

/** The lowest device index in 1..maxInterfaces-1 not in use (0 is the primary interface). */
export function chooseDeviceIndex(usedIndexes: readonly number[], maxInterfaces: number): number {
  const used = new Set(usedIndexes);
  for (let i = 1; i < maxInterfaces; i++) {
    if (!used.has(i)) return i;
  }
  throw new LimitExceededError(
    `no free device index: ${used.size} of ${maxInterfaces} interfaces attached (indexes ${[...used].sort((a, b) => a - b).join(',')})`,
    { cloudCode: 'AttachmentLimitExceeded' },
  );
}

/** Throws LimitExceeded when one more interface would exceed the instance type's limit. */
export function checkInterfaceLimit(attached: number, limits: InstanceLimits, instanceType: string): void {
  if (attached >= limits.maxInterfaces) {
    throw new LimitExceededError(
      `${instanceType} holds at most ${limits.maxInterfaces} network interfaces and has ${attached}`,
      { cloudCode: 'AttachmentLimitExceeded' },
    );
  }
}

/** Throws LimitExceeded when `adding` more IPs would exceed the per-interface limit. */
export function checkIpLimit(
  current: number,
  adding: number,
  limits: InstanceLimits,
  interfaceId: string,
  instanceType: string,
): void {
  if (current + adding > limits.ipsPerInterface) {
    throw new LimitExceededError(
      `${interfaceId} has ${current} private IPs; adding ${adding} exceeds the ${instanceType} limit of ${limits.ipsPerInterface} per interface`,
      { cloudCode: 'PrivateIpAddressLimitExceeded' },
    );
  }
}
