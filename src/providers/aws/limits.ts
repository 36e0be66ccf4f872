// Instance limits, enforced by us because emulators do not: interfaces per instance, private IPs
// per interface, device index choice. Pure functions.

import { LimitExceededError } from '../errors.ts';

export interface InstanceLimits {
  maxInterfaces: number;
  /** Private IPs per interface, its primary included. */
  ipsPerInterface: number;
}

/** The network part of DescribeInstanceTypes' answer (SDK shape, only the fields we read). */
export interface NetworkInfoShape {
  MaximumNetworkInterfaces?: number;
  Ipv4AddressesPerInterface?: number;
  NetworkCards?: { NetworkCardIndex?: number; MaximumNetworkInterfaces?: number }[];
}

/**
 * ENI and IP limits of an instance type. MaximumNetworkInterfaces counts the ENIs of every network
 * card, but ENIs attached without a card index go on card 0, so on multi-card types (p4d, p5,
 * c6in.32xlarge, trn1...) the usable figure is card 0's (as the AWS VPC CNI reads it); single-card
 * types report no cards or one card with the same figure. undefined when the answer has no limits.
 */
export function limitsFromNetworkInfo(info: NetworkInfoShape | undefined): InstanceLimits | undefined {
  if (!info?.MaximumNetworkInterfaces || !info.Ipv4AddressesPerInterface) return undefined;
  const card0 = info.NetworkCards?.find((c) => (c.NetworkCardIndex ?? 0) === 0)?.MaximumNetworkInterfaces;
  return {
    maxInterfaces:
      card0 && card0 > 0 ? Math.min(card0, info.MaximumNetworkInterfaces) : info.MaximumNetworkInterfaces,
    ipsPerInterface: info.Ipv4AddressesPerInterface,
  };
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
