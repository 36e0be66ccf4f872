// One allocation as vpc-ipamd answers it, for the plugin's command tests (c1/eth0, primary ENI).
import type { Allocation } from '../../../src/ipam-daemon/api-types.ts';

export const alloc: Allocation = {
  containerId: 'c1',
  ifName: 'eth0',
  ip: '10.0.1.7',
  interfaceId: 'eni-1',
  interfaceMac: '02:00:00:00:00:01',
  deviceIndex: 0,
  subnetCidr: '10.0.1.0/24',
  gateway: '10.0.1.1',
  routeTable: 0,
  vpcCidrs: ['10.0.0.0/16'],
};
