// Instance limits the pool-engine tests share (EC2's published ENI and IP-per-ENI limits).
import type { PoolLimits } from '../../../src/ipam-daemon/pool-engine.ts';

export const m5large: PoolLimits = {
  instanceType: 'm5.large',
  maxInterfaces: 3,
  ipsPerInterface: 10,
  maxEni: null,
  maxPods: null,
};

export const m54xlarge: PoolLimits = {
  instanceType: 'm5.4xlarge',
  maxInterfaces: 8,
  ipsPerInterface: 30,
  maxEni: null,
  maxPods: null,
};
