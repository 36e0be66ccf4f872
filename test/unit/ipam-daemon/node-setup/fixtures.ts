// The node and its two ENIs that the node-setup plan tests share.
export const node = { primaryIp: '10.64.1.10', primaryMac: '02:00:00:00:00:a0', vpcCidrs: ['10.64.0.0/16'] };
export const enis = [
  {
    id: 'eni-0',
    mac: '02:00:00:00:00:a0',
    deviceIndex: 0,
    subnetCidr: '10.64.1.0/24',
    primaryIp: '10.64.1.10',
  },
  {
    id: 'eni-1',
    mac: '02:00:00:00:00:a1',
    deviceIndex: 1,
    subnetCidr: '10.64.2.0/24',
    primaryIp: '10.64.2.20',
  },
];
