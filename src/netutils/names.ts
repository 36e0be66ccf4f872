// Names and numbers shared by the plugin and node setup, so both agree on what is "ours".
import { createHash } from 'node:crypto';

/** Host-side veth names start with this; the SNAT/connmark rules match `<prefix>+`. */
export const HOST_VETH_PREFIX = 'vpc';

/** Routes and rules we install carry this protocol number, so we can find (and only touch) ours. */
export const ROUTE_PROTO = 118;

/** Rule priorities: to-pod (main) before the connmark rule before from-pod (ENI table). */
export const PRIO_TO_POD = 512;
export const PRIO_CONNMARK = 1024;
export const PRIO_FROM_POD = 1536;

/** Connmark bit marking flows that must use the main table (leave through the primary interface). */
export const CONNMARK_BIT = 0x80;

/** The pod's gateway: link-local, never on the wire; the host veth answers for it by static neighbour. */
export const POD_GATEWAY = '169.254.1.1';

function digest(containerId: string, ifName: string): string {
  return createHash('sha256').update(`${containerId}\0${ifName}`).digest('hex');
}

/**
 * Host veth name: stable for (container id, ifname), unique in practice (44 bits of sha256), and
 * within IFNAMSIZ (3 + 11 = 14 characters).
 */
export function hostVethName(containerId: string, ifName: string): string {
  return HOST_VETH_PREFIX + digest(containerId, ifName).slice(0, 11);
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
