// The AWS VPC CNI's allocation checkpoint (aws-node's ipamd keeps it at
// /var/run/aws-node/ipam.json), read when vpc-ipamd takes a node over from aws-node.
//
// Format (the AWS repo's pkg/ipamd/datastore, version stamp "vpc-cni-ipam/1"):
//   {"version": "vpc-cni-ipam/1",
//    "allocations": [{"networkName": "aws-cni", "containerID": "...", "ifName": "eth0",
//                     "ipv4": "10.0.1.23", "ipv6": "...", "allocationTimestamp": <ns since epoch>,
//                     "metadata": {"k8sPodNamespace": "...", "k8sPodName": "...",
//                                  "interfacesCount": 1}}]}
// One entry per (network, container, ifname); IPv6 entries carry "ipv6" instead of "ipv4".
//
// Pure: text in, entries + the reasons for every entry left out. Never throws on content; a file
// that cannot be used at all comes back as { ok: false, reason }.

import {
  type ValidationError,
  validContainerId,
  validIfName,
  validPodName,
  validPodNamespace,
} from '../validate.ts';

export const AWS_CHECKPOINT_VERSION = 'vpc-cni-ipam/1';
export const DEFAULT_AWS_CHECKPOINT_PATH = '/var/run/aws-node/ipam.json';
/** The AWS daemon's file for a few hundred pods is tens of KiB; anything far larger is not it. */
export const MAX_AWS_CHECKPOINT_BYTES = 16 << 20;

export interface AwsCheckpointEntry {
  containerId: string;
  ifName: string;
  ip: string;
  /** The AWS network name (the conflist's "name"), for the log. */
  networkName: string;
  podNamespace?: string;
  podName?: string;
  /** ISO time the AWS daemon assigned the IP; undefined when the timestamp is unusable. */
  assignedAt?: string;
}

export type AwsCheckpointParse =
  | { ok: true; entries: AwsCheckpointEntry[]; skipped: string[] }
  | { ok: false; reason: string };

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Nanoseconds since the epoch (Go's UnixNano) -> ISO time, when plausible. */
function nanosToIso(v: unknown): string | undefined {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) return undefined;
  const ms = v / 1e6;
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

function entryOf(raw: unknown, i: number): AwsCheckpointEntry | string {
  const where = `allocations[${i}]`;
  if (!isObject(raw)) return `${where}: not an object`;
  const ip = raw.ipv4;
  if (ip === undefined || ip === '') {
    return typeof raw.ipv6 === 'string' && raw.ipv6 !== ''
      ? `${where}: IPv6 allocation ${raw.ipv6} (vpc-ipam is IPv4 only)`
      : `${where}: no ipv4`;
  }
  if (typeof ip !== 'string' || !IPV4.test(ip))
    return `${where}: ipv4 ${JSON.stringify(ip)} is not an IPv4 address`;
  let containerId: string;
  let ifName: string;
  try {
    containerId = validContainerId(raw.containerID);
    ifName = validIfName(raw.ifName);
  } catch (e) {
    return `${where} (${ip}): ${(e as ValidationError).message}`;
  }
  const entry: AwsCheckpointEntry = {
    containerId,
    ifName,
    ip,
    networkName: typeof raw.networkName === 'string' ? raw.networkName.slice(0, 128) : '',
  };
  const meta = isObject(raw.metadata) ? raw.metadata : {};
  // Pod names are for logs, events and the pod watcher; a bad one is dropped, not the entry.
  try {
    if (meta.k8sPodNamespace !== undefined && meta.k8sPodNamespace !== '')
      entry.podNamespace = validPodNamespace(meta.k8sPodNamespace);
    if (meta.k8sPodName !== undefined && meta.k8sPodName !== '')
      entry.podName = validPodName(meta.k8sPodName);
  } catch {
    delete entry.podNamespace;
    delete entry.podName;
  }
  if (entry.podNamespace === undefined || entry.podName === undefined) {
    delete entry.podNamespace;
    delete entry.podName;
  }
  const at = nanosToIso(raw.allocationTimestamp);
  if (at !== undefined) entry.assignedAt = at;
  return entry;
}

export function parseAwsCheckpoint(text: string): AwsCheckpointParse {
  if (Buffer.byteLength(text) > MAX_AWS_CHECKPOINT_BYTES) {
    return { ok: false, reason: `larger than ${MAX_AWS_CHECKPOINT_BYTES} bytes` };
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return { ok: false, reason: `not JSON (${(e as Error).message})` };
  }
  if (!isObject(doc)) return { ok: false, reason: 'not a JSON object' };
  if (doc.version !== AWS_CHECKPOINT_VERSION) {
    return {
      ok: false,
      reason: `version ${JSON.stringify(doc.version)}, expected ${JSON.stringify(AWS_CHECKPOINT_VERSION)}`,
    };
  }
  // The AWS daemon writes "allocations": null when nothing is assigned (a nil Go slice).
  if (doc.allocations === null || doc.allocations === undefined)
    return { ok: true, entries: [], skipped: [] };
  if (!Array.isArray(doc.allocations)) return { ok: false, reason: 'allocations is not an array' };
  const valid: AwsCheckpointEntry[] = [];
  const skipped: string[] = [];
  doc.allocations.forEach((raw, i) => {
    const e = entryOf(raw, i);
    if (typeof e === 'string') skipped.push(e);
    else valid.push(e);
  });
  // Never adopt one IP for two pods, nor one attachment twice: every copy is dropped and the
  // routes decide (an IP still routed to a pod is held for it by route recovery).
  const count = (k: string, m: Map<string, number>) => m.set(k, (m.get(k) ?? 0) + 1);
  const byIp = new Map<string, number>();
  const byKey = new Map<string, number>();
  for (const e of valid) {
    count(e.ip, byIp);
    count(`${e.containerId}/${e.ifName}`, byKey);
  }
  const kept: AwsCheckpointEntry[] = [];
  for (const e of valid) {
    const key = `${e.containerId}/${e.ifName}`;
    if (byIp.get(e.ip)! > 1 || byKey.get(key)! > 1)
      skipped.push(`${key} -> ${e.ip}: its IP or key appears twice`);
    else kept.push(e);
  }
  return { ok: true, entries: kept, skipped };
}
