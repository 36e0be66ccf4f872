/** Our POSTROUTING jump to the SNAT chain (after the chain name in iptables -C/-D/-A). */
export const SNAT_JUMP = [
  '-m',
  'comment',
  '--comment',
  'vpc-ipam: SNAT pod traffic leaving the VPC',
  '-j',
  'VPC-IPAM-SNAT',
];
