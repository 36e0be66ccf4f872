// Names and numbers shared by the plugin and node setup, so both agree on what is "ours".
import { createHash } from 'node:crypto';

/**
 * Host-side veth names start with this by default (AWS_VPC_K8S_CNI_VETHPREFIX / the conflist's
 * vethPrefix choose another); the SNAT/connmark rules match `<prefix>+`.
 */
export const HOST_VETH_PREFIX = 'vpc';

/**
 * A host veth prefix, as the AWS VPC CNI accepts it: 1-4 characters (4 + 11 hex = IFNAMSIZ - 1),
 * letters and digits, not one of the names the kernel or the node already use (eth, vlan, lo).
 */
export function validateVethPrefix(raw: string): string {
  if (!/^[A-Za-z0-9]{1,4}$/.test(raw)) throw new Error('not 1-4 letters or digits');
  if (['eth', 'vlan', 'lo'].includes(raw)) throw new Error(`${raw} is reserved`);
  return raw;
}

/** Exactly the names hostVethName() produces for these prefixes. */
export function hostVethPattern(prefixes: readonly string[] = [HOST_VETH_PREFIX]): RegExp {
  return new RegExp(`^(${prefixes.map(validateVethPrefix).join('|')})[0-9a-f]{11}$`);
}

/** Routes and rules we install carry this protocol number, so we can find (and only touch) ours. */
export const ROUTE_PROTO = 118;

/** Rule priorities: to-pod (main) before the connmark rule before from-pod (ENI table). */
export const PRIO_TO_POD = 512;
export const PRIO_CONNMARK = 1024;
export const PRIO_FROM_POD = 1536;
/** AWS_EXTERNAL_SERVICE_CIDRS: `to <cidr> lookup main`, just before the pods' ENI tables (the AWS plugin's 1535). */
export const PRIO_EXTERNAL_SERVICE = 1535;

/** Connmark bit marking flows that must use the main table (leave through the primary interface). */
export const CONNMARK_BIT = 0x80;

/** The pod's gateway: link-local, never on the wire; the host veth answers for it by static neighbour. */
export const POD_GATEWAY = '169.254.1.1';

function digest(containerId: string, ifName: string): string {
  return createHash('sha256').update(`${containerId}\0${ifName}`).digest('hex');
}

/**
 * Host veth name: stable for (container id, ifname), unique in practice (44 bits of sha256), and
 * within IFNAMSIZ (at most 4 + 11 = 15 characters).
 */
export function hostVethName(containerId: string, ifName: string, prefix = HOST_VETH_PREFIX): string {
  return prefix + digest(containerId, ifName).slice(0, 11);
}

/**
 * Name an ipvlan slave is created under before it is renamed to the pod's ifname inside the pod
 * netns. Linux 6.1 looks the new link's name up in the CALLER's netns even when the link is made
 * directly in another one (`ip link add ... name eth0 netns <pod>` from a node that has an eth0
 * fails with EEXIST; later kernels look in the target). The '-' keeps it apart from every veth
 * prefix (letters and digits) and from the node's own interface names; 15 characters (IFNAMSIZ - 1).
 */
export function ipvlanTempName(containerId: string, ifName: string): string {
  return `ipvl-${digest(containerId, ifName).slice(0, 10)}`;
}

/**
 * Deterministic locally administered unicast MACs for both ends. Setting them at creation saves a
 * read-back (the pod's permanent neighbour entry needs the host MAC) and keeps results stable.
 */
export function vethMacs(containerId: string, ifName: string): { host: string; pod: string } {
  const d = digest(containerId, ifName).slice(12, 22); // 5 bytes
  const tail = d.match(/../g)!.join(':');
  return { host: `02:${tail}`, pod: `06:${tail}` };
}
