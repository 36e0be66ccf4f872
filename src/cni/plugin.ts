// The CNI commands. I/O comes in through PluginDeps so the logic runs against real tools in the
// e2e suite and stays readable here; main.ts does stdin/stdout/env.
import type { Allocation } from '../ipam-daemon/api-types.ts';
import type { IpTool } from '../netutils/ip.ts';
import {
  HOST_VETH_PREFIX,
  hostVethName,
  hostVethPattern,
  ipvlanTempName,
  POD_GATEWAY,
  PRIO_FROM_POD,
  PRIO_TO_POD,
  vethMacs,
} from '../netutils/names.ts';
import { validateIfName, validateIpv4 } from '../netutils/validate.ts';
import type { CniEnv, PluginConfig } from './config.ts';
import { type DaemonClient, DaemonUnreachableError } from './daemon-client.ts';
import type { PluginLog } from './file-log.ts';
import {
  CniError,
  type CniResult,
  compareVersions,
  ErrorCode,
  formatResult,
  mergeResult,
  SUPPORTED_VERSIONS,
} from './spec.ts';
import {
  applyIpvlanAdd,
  diagnoseIpvlan,
  discoverParent,
  type IpvlanPodSpec,
  observeIpvlan,
  planIpvlanAdd,
} from './wiring/ipvlan.ts';
import {
  type AppliedLinks,
  DEL_PLAN_VERSION,
  LEAVE_VETH_PLAN_VERSION,
  type NetPlan,
} from './wiring/net-ops.ts';
import {
  applyVethAdd,
  cleanupHost,
  diagnoseVeth,
  observeHost,
  observePod,
  planVethAdd,
  planVethLink,
  podIpFromHost,
  routedElsewhere,
  settle,
  vethDelPlan,
  vethNetPlan,
} from './wiring/veth.ts';

export interface PluginDeps {
  ip: IpTool;
  daemon: DaemonClient;
  netnsExists(path: string): Promise<boolean>;
  log: PluginLog;
  /**
   * Applies a wiring plan elsewhere (the shim, with netlink) instead of through `ip` processes;
   * rejects with the first failing op. Absent: this process wires with deps.ip.
   */
  apply?: (plan: NetPlan) => Promise<AppliedLinks | undefined>;
  /** The plan version `apply` takes (the shim's); DEL goes through it from DEL_PLAN_VERSION on. */
  planVersion?: number;
  /**
   * The daemon deletes a host veth a DEL left (its sweep) and keeps the IP cooling until that veth
   * is gone. Absent (no cooldown, the Node fallback, an older daemon): DEL deletes the veth itself.
   */
  leaveVeth?: (v: LeftVeth) => void;
}

/** A host veth a DEL left to the runtime's netns deletion: name and ifindex (the sweep's match). */
export interface LeftVeth {
  containerId: string;
  ifName: string;
  hostName: string;
  ifindex: number;
  /** The IP it carried: cooling until the veth is gone. */
  ip: string;
}

/**
 * PluginDeps.apply's rejection when a later DEL or ADD of the same attachment took over while this
 * ADD (or DEL) waited (its shim was killed): the command stops and touches nothing more, the later
 * command owns the attachment (the veth, the IP-keyed routes and rules, the allocation).
 */
export class ApplyCancelledError extends Error {
  constructor(why: string, command = 'ADD') {
    super(`${command} cancelled: ${why}`);
    this.name = 'ApplyCancelledError';
  }
}

export function versionInfo(requested: string | undefined): Record<string, unknown> {
  return { cniVersion: requested ?? '1.1.0', supportedVersions: [...SUPPORTED_VERSIONS] };
}

function isIfName(name: string): boolean {
  try {
    validateIfName(name);
    return true;
  } catch {
    return false;
  }
}

function checkAllocation(a: Allocation): void {
  try {
    validateIpv4(a.ip, 'allocated IP');
  } catch (e) {
    throw new CniError(
      ErrorCode.DAEMON_ERROR,
      `vpc-ipamd returned a bad allocation: ${(e as Error).message}`,
    );
  }
  if (!Number.isInteger(a.routeTable) || a.routeTable < 0 || a.routeTable > 0xfffffff) {
    throw new CniError(ErrorCode.DAEMON_ERROR, `vpc-ipamd returned a bad route table ${a.routeTable}`);
  }
}

/** Our pod IP in a prevResult: the ip bound to the sandbox interface named ifName. */
export function ipFromPrevResult(prev: CniResult | undefined, ifName: string): string | null {
  if (!prev?.ips) return null;
  const idx = prev.interfaces?.findIndex((i) => i.name === ifName && i.sandbox !== undefined) ?? -1;
  if (idx < 0) return null;
  const match = prev.ips.find((ip) => ip.interface === idx);
  const address = match?.address.split('/')[0];
  return address && /^\d+\.\d+\.\d+\.\d+$/.test(address) ? address : null;
}

export async function cmdAdd(
  env: CniEnv,
  conf: PluginConfig,
  deps: PluginDeps,
): Promise<Record<string, unknown>> {
  if (!(await deps.netnsExists(env.netns))) {
    throw new CniError(ErrorCode.INVALID_ENV, `CNI_NETNS ${env.netns} does not exist`);
  }
  const req = { containerId: env.containerId, ifName: env.ifName, netns: env.netns } as Parameters<
    DaemonClient['allocate']
  >[0];
  if (env.podNamespace) req.podNamespace = env.podNamespace;
  if (env.podName) req.podName = env.podName;
  if (env.podUid) req.podUid = env.podUid;
  req.network = conf.name;
  const started = performance.now();
  const hostName = hostVethName(env.containerId, env.ifName, conf.vethPrefix);
  const macs = vethMacs(env.containerId, env.ifName);
  // Routed veth: create the pair while the daemon allocates (the link needs no IP).
  let early: Promise<Error | null> | undefined;
  let linkMs: number | undefined; // when the link batch finished, from the start (the log's breakdown)
  if (conf.mode === 'veth' && !deps.apply)
    early = settle(
      deps.ip.batch(planVethLink({ ...env, mtu: conf.mtu, vethPrefix: conf.vethPrefix }).linkLines),
    ).then((e) => {
      linkMs = ms(started);
      return e;
    });
  let alloc: Allocation;
  const askedAt = performance.now();
  let daemonMs = 0;
  try {
    alloc = await deps.daemon.allocate(req);
    daemonMs = ms(askedAt);
    checkAllocation(alloc);
  } catch (e) {
    if (early && (await early) === null) await cleanupHost(deps.ip, hostName, null);
    throw e;
  }
  deps.log.info('allocated', {
    daemonMs,
    ip: alloc.ip,
    eni: alloc.interfaceId,
    table: alloc.routeTable,
    ms: ms(started),
  });
  let podIfMac: string | undefined = macs.pod;
  // Who applied the wiring, and how long it took (the log's breakdown).
  let wiredBy: 'shim' | 'ip' = 'ip';
  let wireMs: number | undefined;
  const wire = async (linkDone?: Promise<Error | null>) => {
    if (conf.mode === 'veth') {
      const plan = planVethAdd({ ...base(env, alloc), mtu: conf.mtu, vethPrefix: conf.vethPrefix });
      const t = performance.now();
      if (deps.apply) {
        wiredBy = 'shim';
        await deps.apply(vethNetPlan(plan, env.netns));
      } else await applyVethAdd(deps.ip, plan, env.netns, linkDone);
      wireMs = ms(t);
      return;
    }
    const { parent, nodeIps } = await discoverParent(deps.ip, alloc.interfaceMac);
    const plan = planIpvlanAdd(ipvlanSpec(env, conf, alloc, parent, [...nodeIps, ...conf.hostCidrs]));
    podIfMac = undefined; // an ipvlan slave shares its parent's MAC
    await applyIpvlanAdd(deps.ip, plan, env.netns);
  };
  try {
    try {
      await wire(early);
    } catch (e) {
      // Leftovers of an earlier attempt for the same attachment: clean and try once more.
      if (!/File exists/i.test(String((e as Error).message))) throw e;
      deps.log.warn('stale state for this attachment; cleaning and retrying', {
        error: (e as Error).message,
      });
      await rollback(env, conf, deps, hostName, alloc.ip);
      await wire();
    }
  } catch (e) {
    const msg = (e as Error).message;
    if (e instanceof ApplyCancelledError) {
      deps.log.warn('ADD cancelled by a later command of this attachment; leaving everything to it', {
        error: msg,
      });
      throw new CniError(ErrorCode.TRY_AGAIN_LATER, msg);
    }
    // Rules and routes are keyed by IP: touch them (and release) only while this attachment still
    // holds this IP and it is routed to no other veth — a DEL may have freed it for another pod.
    const ours = await stillHolds(env, deps, hostName, alloc.ip);
    deps.log.error(
      ours ? 'wiring failed; rolling back' : 'wiring failed; the attachment moved on, no rollback',
      {
        error: msg,
      },
    );
    if (ours) {
      await rollback(env, conf, deps, hostName, alloc.ip);
      try {
        // Guarded again under the key's lock in the daemon, should a command have come between.
        await deps.daemon.release({ containerId: env.containerId, ifName: env.ifName, ip: alloc.ip });
      } catch (re) {
        deps.log.warn('release after failed ADD did not succeed', { error: (re as Error).message });
      }
    }
    throw new CniError(ErrorCode.WIRING_FAILED, `failed to wire pod interface ${env.ifName}: ${msg}`);
  }
  deps.log.info('ADD done', {
    ip: alloc.ip,
    hostVeth: hostName,
    linkMs,
    wiredBy,
    wireMs,
    ms: ms(started),
  });
  const withMtu = compareVersions(conf.cniVersion, '1.1.0') >= 0;
  const ours: CniResult = {
    cniVersion: conf.cniVersion,
    interfaces: [
      { name: hostName, mac: macs.host, ...(withMtu ? { mtu: conf.mtu } : {}) },
      {
        name: env.ifName,
        ...(podIfMac ? { mac: podIfMac } : {}),
        ...(withMtu ? { mtu: conf.mtu } : {}),
        sandbox: env.netns,
      },
    ],
    ips: [
      conf.mode === 'veth'
        ? { address: `${alloc.ip}/32`, gateway: POD_GATEWAY, interface: 1 }
        : { address: `${alloc.ip}/${alloc.subnetCidr.split('/')[1]}`, gateway: alloc.gateway, interface: 1 },
    ],
    routes: [{ dst: '0.0.0.0/0', gw: conf.mode === 'veth' ? POD_GATEWAY : alloc.gateway }],
    dns: conf.dns ?? {},
  };
  return formatResult(mergeResult(conf.prevResult, ours), conf.cniVersion);
}

function ipvlanSpec(
  env: CniEnv,
  conf: PluginConfig,
  alloc: Allocation,
  parent: string,
  hostDestinations: string[],
): IpvlanPodSpec {
  return {
    ...base(env, alloc),
    subnetCidr: alloc.subnetCidr,
    gateway: alloc.gateway,
    mtu: conf.mtu,
    vethPrefix: conf.vethPrefix,
    parent,
    hostDestinations,
    directCidrs: alloc.noSnatCidrs ?? alloc.vpcCidrs,
  };
}

function base(env: CniEnv, alloc: Allocation) {
  return {
    containerId: env.containerId,
    ifName: env.ifName,
    netns: env.netns,
    ip: alloc.ip,
    routeTable: alloc.routeTable,
  };
}

function ms(since: number): number {
  return Math.round((performance.now() - since) * 10) / 10;
}

/**
 * True while the daemon still holds `ip` for this attachment and no other veth has its /32 route.
 * Unsure (the daemon did not answer): false, so nothing another pod may own is touched.
 */
async function stillHolds(env: CniEnv, deps: PluginDeps, hostName: string, ip: string): Promise<boolean> {
  try {
    const held = await deps.daemon.getAllocation({ containerId: env.containerId, ifName: env.ifName });
    return held?.ip === ip && !(await routedElsewhere(deps.ip, hostName, ip));
  } catch (e) {
    deps.log.warn('cannot tell whether the attachment still holds its IP', { error: (e as Error).message });
    return false;
  }
}

async function rollback(
  env: CniEnv,
  conf: PluginConfig,
  deps: PluginDeps,
  hostName: string,
  ip: string | null,
) {
  const problems = await cleanupHost(deps.ip, hostName, ip);
  if (conf.mode === 'ipvlan' && env.netns && (await deps.netnsExists(env.netns))) {
    // the slave under its final name, or still under its creation name (ADD failed before the rename)
    const names = [env.ifName, ipvlanTempName(env.containerId, env.ifName)];
    problems.push(
      ...(await deps.ip.batchBestEffort(
        names.map((n) => ['link', 'del', 'dev', n]),
        { netns: env.netns },
      )),
    );
  }
  return problems;
}

/**
 * DEL's host side with `ip` processes: finds the IP's veth (and the IP from the veth's route when
 * nothing else named it), then removes the rules and the veth. Returns the IP whose rules it took.
 */
async function delHostSide(
  env: CniEnv,
  conf: PluginConfig,
  deps: PluginDeps,
  ours: string,
  known: string | null,
  ask: () => Promise<Allocation | null>,
): Promise<string | null> {
  let hostName = ours;
  let ip = known;
  if (ip && (await routedElsewhere(deps.ip, hostName, ip))) {
    // A pod another plugin wired (adopted from aws-node): the daemon names its host veth, and the
    // IP must be routed to exactly that veth before we touch it.
    const a = await ask();
    const adopted = a?.ip === ip && a.hostVeth && isIfName(a.hostVeth) ? a.hostVeth : null;
    if (adopted && !(await routedElsewhere(deps.ip, adopted, ip))) {
      hostName = adopted;
    } else {
      // A stale DEL (e.g. retried after the IP went to another pod): rules are keyed by IP, so
      // they now belong to that pod. Remove only what is named after this attachment.
      deps.log.warn('pod IP is routed to another veth now; leaving its rules alone', { ip });
      ip = null;
    }
  } else {
    ip ??= await podIpFromHost(deps.ip, hostName);
  }
  const problems = await rollback(env, conf, deps, hostName, ip);
  if (problems.length > 0) {
    throw new CniError(ErrorCode.WIRING_FAILED, `cleanup of ${hostName} failed: ${problems.join('; ')}`);
  }
  return ip;
}

export async function cmdDel(env: CniEnv, conf: PluginConfig, deps: PluginDeps): Promise<null> {
  const key = { containerId: env.containerId, ifName: env.ifName };
  const hostName = hostVethName(env.containerId, env.ifName, conf.vethPrefix);
  let daemonUp = true;
  let alloc: Allocation | null | undefined; // undefined: not asked yet
  const ask = async (): Promise<Allocation | null> => {
    if (alloc !== undefined) return alloc;
    try {
      alloc = await deps.daemon.getAllocation(key);
    } catch (e) {
      if (!(e instanceof DaemonUnreachableError)) throw e;
      daemonUp = false;
      alloc = null;
    }
    return alloc;
  };
  const started = performance.now();
  let ip = ipFromPrevResult(conf.prevResult, env.ifName) ?? (await ask())?.ip ?? null;
  // Who cleaned the host side, and how long it took (the log's breakdown).
  let wiredBy: 'shim' | 'ip' = 'ip';
  let wireMs: number | undefined;
  const planVersion = deps.planVersion ?? 1;
  const apply = planVersion >= DEL_PLAN_VERSION && conf.mode === 'veth' ? deps.apply : undefined;
  // As the AWS VPC CNI: the rules and the route go, the veth is left to the runtime's netns
  // deletion (the kernel destroys the pair there), and the daemon sweeps it if it outlives that.
  const leave = planVersion >= LEAVE_VETH_PLAN_VERSION ? deps.leaveVeth : undefined;
  let vethLeft = false;
  // A veth another plugin made (adopted from aws-node) has another name: the `ip` path finds it.
  const adopted = async () => {
    const a = await ask();
    return a?.hostVeth !== undefined && a.hostVeth !== hostName;
  };
  if (apply && ip && !(await adopted())) {
    const t = performance.now();
    try {
      const links = await apply(vethDelPlan(hostName, ip, leave !== undefined));
      wiredBy = 'shim';
      wireMs = ms(t);
      const ifindex = links?.[hostName];
      // Before the release: the IP then cools until the sweep saw this very veth gone.
      if (leave && ifindex !== undefined) {
        leave({ containerId: env.containerId, ifName: env.ifName, hostName, ifindex, ip });
        vethLeft = true;
      }
    } catch (e) {
      if (e instanceof ApplyCancelledError) throw new CniError(ErrorCode.TRY_AGAIN_LATER, e.message);
      // Nothing is released yet: clean up here with `ip` (the steps are all safe to repeat).
      deps.log.warn('the shim did not apply the DEL plan; cleaning up with ip', {
        error: (e as Error).message,
      });
    }
  }
  if (wiredBy === 'ip') {
    const t = performance.now();
    ip = await delHostSide(env, conf, deps, hostName, ip, ask);
    wireMs = ms(t);
  }
  if (daemonUp) {
    try {
      const r = await deps.daemon.release(key);
      deps.log.info('DEL done', { released: r.released, ip, wiredBy, wireMs, vethLeft, ms: ms(started) });
      return null;
    } catch (e) {
      if (!(e instanceof DaemonUnreachableError)) throw e;
    }
  }
  // The host side is clean; the daemon frees the IP when it runs again (deferred-release.ts), or
  // on its next GC / pod-watch pass if the note cannot be written.
  let noted = false;
  if (deps.daemon.deferRelease) {
    try {
      await deps.daemon.deferRelease(ip ? { ...key, ip } : key);
      noted = true;
    } catch (e) {
      deps.log.warn('DEL: cannot note the release for vpc-ipamd', { error: (e as Error).message });
    }
  }
  deps.log.warn(
    `DEL: vpc-ipamd unreachable; host side cleaned, IP release deferred to ${noted ? 'its restart' : 'daemon GC'}`,
    { ip },
  );
  return null;
}

export async function cmdCheck(env: CniEnv, conf: PluginConfig, deps: PluginDeps): Promise<null> {
  const key = { containerId: env.containerId, ifName: env.ifName };
  const alloc = await deps.daemon.getAllocation(key);
  if (!alloc) {
    throw new CniError(ErrorCode.CHECK_FAILED, `vpc-ipamd holds no IP for ${env.containerId}/${env.ifName}`);
  }
  const prevIp = ipFromPrevResult(conf.prevResult, env.ifName);
  if (prevIp && prevIp !== alloc.ip) {
    throw new CniError(ErrorCode.CHECK_FAILED, `prevResult says ${prevIp} but vpc-ipamd holds ${alloc.ip}`);
  }
  const hostName = hostVethName(env.containerId, env.ifName, conf.vethPrefix);
  let problems: string[];
  if (conf.mode === 'ipvlan') {
    // The node's own addresses may have changed since ADD (ENIs come and go): CHECK holds the pod
    // to the configured hostCidrs only.
    const spec = ipvlanSpec(env, conf, alloc, '', conf.hostCidrs);
    const seen = await observeIpvlan(deps.ip, { ...spec, hostName }, await deps.netnsExists(env.netns));
    problems = diagnoseIpvlan(spec, seen.host, seen.pod);
  } else {
    const spec = { ...base(env, alloc), mtu: conf.mtu, vethPrefix: conf.vethPrefix };
    const [host, pod] = await Promise.all([
      observeHost(deps.ip, hostName, alloc.ip),
      (async () =>
        (await deps.netnsExists(env.netns)) ? observePod(deps.ip, env.netns, env.ifName) : null)(),
    ]);
    problems = diagnoseVeth(spec, host, pod);
  }
  if (problems.length > 0) {
    throw new CniError(ErrorCode.CHECK_FAILED, `pod network is damaged: ${problems.join('; ')}`);
  }
  return null;
}

interface LinkRow {
  ifname?: string;
}
interface RouteRow {
  dst?: string;
  dev?: string;
}
interface RuleRow {
  priority?: number;
  src?: string;
  dst?: string;
  protocol?: string;
}

/** Host-side GC plan (pure): delete our veths and pod rules that no valid attachment owns. */
export function planGc(
  valid: { containerId: string; ifName: string }[],
  links: LinkRow[],
  routes: RouteRow[],
  rules: RuleRow[],
  vethPrefix = HOST_VETH_PREFIX,
): { staleLinks: string[]; lines: string[][] } {
  const ours = hostVethPattern([vethPrefix]);
  const validNames = new Set(valid.map((a) => hostVethName(a.containerId, a.ifName, vethPrefix)));
  const staleLinks = links.map((l) => l.ifname ?? '').filter((n) => ours.test(n) && !validNames.has(n));
  // IPs still routed to a valid veth are in use; every other pod rule of ours is stale.
  const liveIps = new Set(routes.filter((r) => r.dev && validNames.has(r.dev)).map((r) => r.dst));
  const lines: string[][] = [];
  for (const r of rules) {
    if (r.protocol !== '118' && r.protocol !== String(118)) continue;
    if (r.priority === PRIO_TO_POD && r.dst && !liveIps.has(r.dst)) {
      lines.push(['rule', 'del', 'to', `${r.dst}/32`, 'lookup', 'main', 'priority', String(PRIO_TO_POD)]);
    }
    if (r.priority === PRIO_FROM_POD && r.src && !liveIps.has(r.src)) {
      lines.push(['rule', 'del', 'from', `${r.src}/32`, 'priority', String(PRIO_FROM_POD)]);
    }
  }
  for (const l of staleLinks) lines.push(['link', 'del', 'dev', l]);
  return { staleLinks, lines };
}

export async function cmdGc(conf: PluginConfig, deps: PluginDeps): Promise<null> {
  if (compareVersions(conf.cniVersion, '1.1.0') < 0) {
    throw new CniError(
      ErrorCode.INCOMPATIBLE_VERSION,
      `GC needs cniVersion 1.1.0, config has ${conf.cniVersion}`,
    );
  }
  if (!conf.validAttachments) {
    throw new CniError(
      ErrorCode.INVALID_CONFIG,
      'GC needs "cni.dev/valid-attachments" in the network config',
    );
  }
  // Host side first: the daemon releases an unlisted allocation only once its veth and host route
  // are gone, so it must see them gone.
  const [links, routes, rules] = await Promise.all([
    deps.ip.json<LinkRow>(['link', 'show', 'type', 'veth']),
    deps.ip.json<RouteRow>(['route', 'show', 'table', 'main', 'proto', '118']),
    deps.ip.json<RuleRow>(['rule', 'show']),
  ]);
  const plan = planGc(conf.validAttachments, links, routes, rules, conf.vethPrefix);
  const problems = await deps.ip.batchBestEffort(plan.lines);
  const gc = await deps.daemon.gc(conf.validAttachments, conf.name);
  deps.log.info('GC done', { daemonReleased: gc.released.length, staleLinks: plan.staleLinks });
  if (problems.length > 0)
    throw new CniError(ErrorCode.WIRING_FAILED, `GC cleanup failed: ${problems.join('; ')}`);
  return null;
}

export async function cmdStatus(conf: PluginConfig, deps: PluginDeps): Promise<null> {
  if (compareVersions(conf.cniVersion, '1.1.0') < 0) {
    throw new CniError(
      ErrorCode.INCOMPATIBLE_VERSION,
      `STATUS needs cniVersion 1.1.0, config has ${conf.cniVersion}`,
    );
  }
  let reason: string | null;
  try {
    reason = await deps.daemon.readiness();
  } catch (e) {
    reason = (e as Error).message;
  }
  if (reason !== null) throw new CniError(ErrorCode.NOT_AVAILABLE, `vpc-ipamd is not ready: ${reason}`);
  return null;
}
