// The warm-pool engine: a pure function from the pool's state, the node's limits and the warm
// targets to the cloud actions that bring the pool to its target, plus the words that explain it.
// No I/O and no clock of its own (`now` is an argument), so every case is a table-driven test.
//
// The target is computed in ONE step from demand (assigned + cooling + waiting requests), not one
// batch per tick: a burst of 20 pods on an empty pool becomes one assign of 20, not 20 rounds.
// Grow fills existing interfaces before creating new ones; shrink waits until the pool has been
// above its target for `shrinkDelayMs`, never goes below the target, and deletes an interface only
// when it holds no assigned or cooling IP and its IPs are not needed.
//
// Bursts: the kubelet starts pods a few at a time, so the requests waiting at any moment undercount
// a burst. The engine learns the arrival rate from the allocations of the last `burstWindowMs` and,
// while a burst is under way and outruns the pool (requests wait for an IP), grows ahead by as many
// IPs as arrived in that window (what the next window is expected to bring while new interfaces take
// seconds to become usable); in IP mode that look-ahead only fills interfaces held or on the way,
// and a new interface is created only for what the pool needs without it. When the burst
// ends the window empties, the target falls back to the warm targets and the surplus goes after
// the shrink delay. Interfaces still in node setup count as capacity on the way, so growth does not
// stall until they are usable (their IPs are still handed out only once they are).

export type NoIpReason =
  | 'subnet-full'
  | 'instance-limit'
  | 'max-eni'
  | 'max-pods'
  | 'throttled'
  | 'cloud-error'
  | 'pool-growing'
  | 'provisioning-disabled'
  | 'node-cordoned';

export interface NoIpInfo {
  reason: NoIpReason;
  /** Words a user can act on. */
  message: string;
}

export interface EngineInterface {
  id: string;
  deviceIndex: number;
  subnetId: string;
  /** Pod IPs may live here (its subnet is a pod subnet and node setup is done). */
  usable: boolean;
  /**
   * Ours, attached, in a pod subnet, and waiting only for node setup (a hot-plugged interface shows
   * up in the node seconds after the cloud attached it): its IPs are capacity on the way, not
   * servable yet.
   */
  settingUp?: boolean;
  /** We created it and it is not the primary: we may delete it. */
  deletable: boolean;
  /** Secondary IPs it holds. */
  total: number;
  assigned: number;
  cooling: number;
  /** IPs neither assigned nor cooling (nor being released): the ones that may be given back. */
  freeIps: string[];
}

export interface EngineSubnet {
  id: string;
  cidr?: string;
  /** Free addresses as last reported by the cloud; null when unknown. */
  availableIps: number | null;
  /** Skip this subnet until then (it said it was full). */
  backoffUntil: number | null;
}

export interface CloudBackoff {
  reason: 'throttled' | 'cloud-error';
  message: string;
  until: number;
}

export interface PoolState {
  interfaces: EngineInterface[];
  /** Allocation requests waiting for an IP. */
  pending: number;
  /** Since when the pool has been above its target (from the previous plan), or null. */
  excessSince: number | null;
  /** Allowed pod subnets, in order of preference. */
  subnets: EngineSubnet[];
  cloudBackoff: CloudBackoff | null;
  /**
   * The node is unschedulable (cordoned, draining) and AWS_MANAGE_ENIS_NON_SCHEDULABLE is false: no
   * new interface is attached and nothing is given back while it drains (its pods are leaving).
   */
  cordoned?: boolean;
  /** When the recent allocations were made (ms, same clock as `now`), for the arrival rate. */
  recentAllocations?: readonly number[];
  /** The pool grew ahead of a burst since it was last at or below its plain target (from the previous plan). */
  grewAhead?: boolean;
}

export interface PoolLimits {
  instanceType: string;
  /** Interfaces the instance type allows (the primary included). */
  maxInterfaces: number;
  /** IPs per interface, its own primary included. */
  ipsPerInterface: number;
  /** MAX_ENI, when set. */
  maxEni: number | null;
  /** The kubelet's max pods (MAX_PODS), when set. */
  maxPods: number | null;
}

export interface PoolTargets {
  warmEniTarget: number;
  warmIpTarget: number | null;
  minimumIpTarget: number | null;
  /** IP mode: grow by at least this many IPs per call. */
  minGrowStep: number;
  shrinkDelayMs: number;
  /** Arrival-rate window: grow ahead by the allocations seen within it (IP mode: on interfaces held or on the way). 0 or unset: off. */
  burstWindowMs?: number;
  /** Fewer allocations than this within the window is not a burst (no growing ahead). */
  burstMinArrivals?: number;
}

/** Burst detection defaults: 10 s covers an interface's attach-to-usable time on EC2. */
export const DEFAULT_BURST_WINDOW_MS = 10_000;
export const DEFAULT_BURST_MIN_ARRIVALS = 4;

export type PoolAction =
  | { kind: 'assign'; interfaceId: string; count: number }
  | { kind: 'create'; subnetId: string; ipCount: number }
  | { kind: 'unassign'; interfaceId: string; ips: string[] }
  | { kind: 'delete'; interfaceId: string };

export interface Plan {
  actions: PoolAction[];
  /** One line a human understands: the numbers and the decision. */
  why: string;
  mode: 'eni' | 'ip';
  total: number;
  used: number;
  free: number;
  desired: number;
  /** IPs grown ahead of a burst under way (included in desired before the ceiling). */
  ahead: number;
  /** Most pod IPs this node can hold now. */
  ceiling: number;
  /** The node's max pods: interfaces x (IPs per interface - 1) + 2, or MAX_PODS if lower. */
  maxPods: number;
  /** Set when there is no free IP: why, and what to do. */
  noIp: NoIpInfo | null;
  /** Carry into the next state. */
  excessSince: number | null;
  /** Carry into the next state. */
  grewAhead: boolean;
}

/** Interfaces the node may hold: the instance limit, or MAX_ENI if lower. */
export function effectiveMaxInterfaces(limits: PoolLimits): number {
  return Math.max(1, Math.min(limits.maxInterfaces, limits.maxEni ?? Number.POSITIVE_INFINITY));
}

/** interfaces x (IPs per interface - 1) + 2, or the kubelet's max pods if lower. */
export function maxPodsFor(limits: PoolLimits): number {
  const formula = effectiveMaxInterfaces(limits) * (limits.ipsPerInterface - 1) + 2;
  return Math.min(formula, limits.maxPods ?? Number.POSITIVE_INFINITY);
}

export function isIpMode(targets: PoolTargets): boolean {
  // As in the AWS VPC CNI: a target of 0 counts as unset, so WARM_IP_TARGET=0 alone stays in ENI mode.
  return (targets.warmIpTarget ?? 0) >= 1 || (targets.minimumIpTarget ?? 0) >= 1;
}

export function plan(state: PoolState, limits: PoolLimits, targets: PoolTargets, now: number): Plan {
  const perIf = Math.max(0, limits.ipsPerInterface - 1);
  const maxIfs = effectiveMaxInterfaces(limits);
  const ipMode = isIpMode(targets);
  const ifs = [...state.interfaces].sort((a, b) => a.deviceIndex - b.deviceIndex);

  const total = sum(ifs, (i) => i.total);
  const assigned = sum(ifs, (i) => i.assigned);
  const cooling = sum(ifs, (i) => i.cooling);
  const free = sum(ifs, (i) => i.freeIps.length);
  const used = assigned + cooling;
  const burst = burstAhead(state.recentAllocations ?? [], now, targets);
  const demand = used + state.pending;

  const availableSubnets = subnetsUsable(state.subnets, now);
  const blockedSubnets = new Set(
    state.subnets.filter((s) => s.backoffUntil !== null && s.backoffUntil > now).map((s) => s.id),
  );
  // Free addresses per subnet, where the cloud told us; shared by assigns and creates below. A grow
  // batch never asks for more than that: ARM refuses a whole batch that does not fit (SubnetIsFull),
  // so asking for 16 when 3 are left would get none.
  const budget = new Map<string, number | null>(state.subnets.map((s) => [s.id, s.availableIps]));
  const subnetLeft = (id: string): number => budget.get(id) ?? Number.POSITIVE_INFINITY;
  // An interface in node setup may be filled too: the cloud takes IPs on any attached interface.
  const onTheWay = (i: EngineInterface) => i.usable || i.settingUp === true;
  const fillable = (i: EngineInterface) =>
    onTheWay(i) && i.total < perIf && !blockedSubnets.has(i.subnetId) && subnetLeft(i.subnetId) > 0;
  const cordoned = state.cordoned === true;
  const emptyDeletable = ifs.filter(
    (i) => i.deletable && i.total === 0 && i.assigned === 0 && i.cooling === 0,
  );
  // Of those, the ones never to serve a pod (outside the pod subnets): a slot only waiting to be
  // given back. A grow that needs the slot deletes it at once instead of after the shrink delay.
  const deadSlots = cordoned ? [] : emptyDeletable.filter((i) => !i.usable && i.settingUp !== true);
  const slotsForNew = cordoned ? 0 : Math.max(0, maxIfs - ifs.length + deadSlots.length);
  const canCreate = availableSubnets.length > 0 ? Math.max(0, maxIfs - ifs.length) : 0;
  let makingRoom = 0;
  // Pod IPs this node could hold: room on usable interfaces (and those in node setup) plus
  // interfaces it could still create.
  const ifCapacity = sum(ifs.filter(onTheWay), () => perIf) + slotsForNew * perIf;
  const podCap = limits.maxPods ?? Number.POSITIVE_INFINITY;
  const ceiling = Math.max(used, Math.min(ifCapacity, podCap));
  const maxPods = maxPodsFor(limits);

  const warm = targets.warmIpTarget ?? 0;
  const floor = targets.minimumIpTarget ?? 0;
  const targetFor = (d: number) =>
    ipMode
      ? Math.max(d + warm, floor)
      : ((perIf === 0 ? 0 : Math.ceil(d / perIf)) + targets.warmEniTarget) * perIf;
  const targetWords = ipMode
    ? `WARM_IP_TARGET=${targets.warmIpTarget ?? 'unset'} MINIMUM_IP_TARGET=${targets.minimumIpTarget ?? 'unset'}`
    : `WARM_ENI_TARGET=${targets.warmEniTarget}`;
  const clampTarget = (d: number) => Math.max(used, Math.min(d, ceiling));
  // What the pool needs without the look-ahead: in IP mode only this may create interfaces.
  const baseDesired = clampTarget(targetFor(demand));
  // Grow ahead of a burst only while demand outruns the pool (requests wait for an IP): a burst
  // the pool is keeping up with, or one just served, adds nothing that would only be given back.
  const ahead = burst > 0 && state.pending > 0 ? burst : 0;
  const desired = ahead > 0 ? clampTarget(targetFor(demand + ahead)) : baseDesired;

  const actions: PoolAction[] = [];
  let excessSince: number | null = null;
  // Still holding what a look-ahead brought in, until the pool is back at its plain target.
  let grewAhead = state.grewAhead === true && total > baseDesired;
  let growth = 0;
  let decision: string;
  const backoff = state.cloudBackoff && state.cloudBackoff.until > now ? state.cloudBackoff : null;

  if (backoff) {
    decision = `waiting ${Math.ceil((backoff.until - now) / 1000)}s before calling the cloud again (${backoff.reason})`;
    excessSince = state.excessSince;
  } else if (cordoned && desired <= total) {
    decision = 'node is unschedulable (cordoned): not shrinking while it drains';
  } else if (desired > total) {
    let need = desired - total;
    if (ipMode) need = Math.min(Math.max(need, targets.minGrowStep), ceiling - total);
    // IP mode: the look-ahead fills interfaces that exist or are on the way, but a new interface is
    // created only for what the pool needs without it (requests waiting plus the warm targets): an
    // interface created for look-ahead alone cost a create and, after the shrink delay, a delete
    // (a 110-pod burst on an m5.4xlarge created five where three would do).
    let baseNeed = Number.POSITIVE_INFINITY;
    if (ipMode) {
      baseNeed = baseDesired > total ? Math.max(baseDesired - total, targets.minGrowStep) : 0;
      baseNeed = Math.min(baseNeed, need);
    }
    // Fill existing interfaces first (lowest device index first).
    for (const i of ifs) {
      if (need <= 0) break;
      if (!fillable(i)) continue;
      const room = perIf - i.total;
      const n = Math.min(room, need, subnetLeft(i.subnetId));
      actions.push({ kind: 'assign', interfaceId: i.id, count: n });
      const left = budget.get(i.subnetId);
      if (left !== null && left !== undefined) budget.set(i.subnetId, left - n);
      need -= n;
      baseNeed -= n;
      growth += n;
    }
    // Then new interfaces, in the preferred subnets that still have room (each filled with as much
    // of the look-ahead as it holds).
    let creates = 0;
    while (need > 0 && baseNeed > 0 && creates < canCreate) {
      const subnet = availableSubnets.find((s) => {
        const left = budget.get(s.id);
        return left === null || left === undefined || left >= 2;
      });
      if (!subnet) break;
      const left = budget.get(subnet.id);
      const n = Math.min(need, perIf, left === null || left === undefined ? perIf : left - 1);
      actions.push({ kind: 'create', subnetId: subnet.id, ipCount: n });
      if (left !== null && left !== undefined) budget.set(subnet.id, left - n - 1);
      need -= n;
      baseNeed -= n;
      growth += n;
      creates++;
    }
    // No slot left for what is still needed: free the dead ones now; the next round creates there.
    if (need > 0 && baseNeed > 0 && availableSubnets.length > 0) {
      for (const i of deadSlots.slice(0, Math.ceil(need / Math.max(1, perIf)))) {
        actions.push({ kind: 'delete', interfaceId: i.id });
        makingRoom++;
      }
    }
    if (ahead > 0 && growth > 0) grewAhead = true;
    const why = cordoned ? ': node is unschedulable, no new interface' : '';
    const short =
      need <= 0
        ? ''
        : baseNeed <= 0
          ? ` (${need} ahead left out: no new interface for the look-ahead alone)`
          : ` (${need} more cannot be had${why})`;
    const room =
      makingRoom > 0
        ? `; deleting ${makingRoom} empty interface(s) outside the pod subnets to make room`
        : '';
    decision = `grow by ${growth}${short}${room}`;
  } else if (
    (total > desired && !(ipMode && total - desired < targets.minGrowStep && !grewAhead)) ||
    emptyDeletable.length > 0
  ) {
    // IP mode keeps up to minGrowStep - 1 extra IPs (hysteresis): what one grow step brought in is
    // not given back right away, or churn would cost a grow and a shrink call per pod. What the
    // look-ahead brought in beyond the burst is not such a step: it goes after the shrink delay.
    const since = state.excessSince ?? now;
    excessSince = since;
    const waited = now - since;
    if (waited < targets.shrinkDelayMs) {
      decision = `${total - desired} above target; shrink in ${Math.ceil((targets.shrinkDelayMs - waited) / 1000)}s if still unneeded`;
    } else {
      let excess = total - desired;
      const released: string[] = [];
      // Whole interfaces first: empty, ours, and not needed (highest device index first).
      for (const i of [...ifs].reverse()) {
        if (!i.deletable || i.assigned > 0 || i.cooling > 0 || i.total > excess) continue;
        actions.push({ kind: 'delete', interfaceId: i.id });
        excess -= i.total;
        released.push(`delete ${i.id}`);
      }
      // IP mode also returns single free IPs, from the least used interfaces first so they empty out.
      if (ipMode && excess > 0) {
        const deleted = new Set(actions.map((a) => (a.kind === 'delete' ? a.interfaceId : '')));
        const order = ifs
          .filter((i) => !deleted.has(i.id) && i.freeIps.length > 0)
          .sort((a, b) => a.assigned + a.cooling - (b.assigned + b.cooling) || b.deviceIndex - a.deviceIndex);
        for (const i of order) {
          if (excess <= 0) break;
          const ips = i.freeIps.slice(-Math.min(excess, i.freeIps.length));
          actions.push({ kind: 'unassign', interfaceId: i.id, ips });
          excess -= ips.length;
          released.push(`unassign ${ips.length} from ${i.id}`);
        }
      }
      decision =
        released.length > 0
          ? `shrink: ${released.join(', ')}`
          : 'above target, but nothing can be given back';
      excessSince = actions.length > 0 ? null : since;
      if (actions.length > 0) grewAhead = false;
    }
  } else {
    decision = 'at target';
  }

  // Free IPs on interfaces not yet usable (node setup pending) cannot serve a pod.
  const servable = sum(
    ifs.filter((i) => i.usable),
    (i) => i.freeIps.length,
  );
  const noIp = servable > 0 ? null : explainNoIp();
  const aheadWords = ahead > 0 ? `, ${ahead} ahead (burst)` : '';
  const why =
    `${ipMode ? 'IP' : 'ENI'} mode (${targetWords}): ${total} IPs, ${assigned} assigned, ${cooling} cooling, ` +
    `${free} free, ${state.pending} waiting${aheadWords}; target ${desired} (max ${ceiling}); ${decision}`;
  return {
    actions,
    why,
    mode: ipMode ? 'ip' : 'eni',
    total,
    used,
    free,
    desired,
    ahead,
    ceiling,
    maxPods,
    noIp,
    excessSince,
    grewAhead,
  };

  function explainNoIp(): NoIpInfo {
    if (backoff) return { reason: backoff.reason, message: backoff.message };
    if (growth > 0) {
      return {
        reason: 'pool-growing',
        message: `the pool is growing by ${growth} IP(s) (${total} held, ${used} in use); retry in a few seconds`,
      };
    }
    if (makingRoom > 0) {
      return {
        reason: 'pool-growing',
        message: `${makingRoom} empty interface(s) outside the pod subnets are being deleted to make room for a new one; retry in a few seconds`,
      };
    }
    const coolingNote = cooling > 0 ? `; ${cooling} released IP(s) are in cooldown and free up shortly` : '';
    const arriving = sum(
      ifs.filter((i) => i.settingUp === true),
      (i) => i.freeIps.length,
    );
    if (arriving > 0) {
      // Not a hard limit: these IPs are attached and wait only for the interface to show up.
      return {
        reason: 'pool-growing',
        message: `${arriving} IP(s) on newly attached interface(s) become usable once they show up in the node (seconds); retry shortly`,
      };
    }
    if (cordoned && !ifs.some(fillable) && ifs.length < maxIfs) {
      return {
        reason: 'node-cordoned',
        message: `the node is unschedulable (cordoned) and its interfaces are full (${used} in use${coolingNote}); no new interface is attached while it drains (AWS_MANAGE_ENIS_NON_SCHEDULABLE=false); uncordon it, or set AWS_MANAGE_ENIS_NON_SCHEDULABLE=true`,
      };
    }
    if (limits.maxPods !== null && used >= limits.maxPods) {
      return {
        reason: 'max-pods',
        message: `MAX_PODS=${limits.maxPods} reached: ${used} pod IP(s) in use${coolingNote}; schedule fewer pods on this node or raise MAX_PODS with the kubelet's --max-pods`,
      };
    }
    const usableFull = !ifs.some(fillable);
    if (
      usableFull &&
      ifs.length - deadSlots.length >= maxIfs &&
      !ifs.some((i) => i.usable && i.total < perIf)
    ) {
      if (limits.maxEni !== null && limits.maxEni < limits.maxInterfaces) {
        return {
          reason: 'max-eni',
          message: `MAX_ENI=${limits.maxEni} caps this node at ${maxIfs} interface(s) (${ceiling} pod IPs), all in use${coolingNote}; raise MAX_ENI (the ${limits.instanceType} limit is ${limits.maxInterfaces}) or schedule fewer pods here`,
        };
      }
      return {
        reason: 'instance-limit',
        message: `${limits.instanceType} holds at most ${limits.maxInterfaces} interfaces x ${perIf} pod IPs = ${ceiling} pod IPs, all in use${coolingNote}; set the kubelet's --max-pods to ${maxPods} so the scheduler stops here, or use a larger instance type`,
      };
    }
    if (usableFull && availableSubnets.length === 0 && state.subnets.length > 0) {
      const names = state.subnets.map((s) => (s.cidr ? `${s.id} (${s.cidr})` : s.id)).join(', ');
      return {
        reason: 'subnet-full',
        message: `subnet${state.subnets.length > 1 ? 's' : ''} ${names} ha${state.subnets.length > 1 ? 've' : 's'} no free addresses; add subnets to POD_SUBNET_IDS, free addresses in them, or lower WARM_ENI_TARGET/WARM_IP_TARGET cluster-wide`,
      };
    }
    return {
      reason: 'pool-growing',
      message: `no free IP yet (${total} held, ${used} in use${coolingNote}); the pool grows on demand, retry in a few seconds`,
    };
  }
}

/**
 * IPs to grow ahead of a burst: the allocations made within the last window, when there were at
 * least `burstMinArrivals` of them (a trickle of pods is not a burst), else 0.
 */
export function burstAhead(recent: readonly number[], now: number, targets: PoolTargets): number {
  const windowMs = targets.burstWindowMs ?? 0;
  if (windowMs <= 0) return 0;
  let n = 0;
  for (const t of recent) if (t > now - windowMs && t <= now) n++;
  return n >= (targets.burstMinArrivals ?? DEFAULT_BURST_MIN_ARRIVALS) ? n : 0;
}

function subnetsUsable(subnets: EngineSubnet[], now: number): EngineSubnet[] {
  return subnets.filter(
    (s) =>
      (s.backoffUntil === null || s.backoffUntil <= now) && (s.availableIps === null || s.availableIps >= 2),
  );
}

function sum<T>(items: T[], f: (t: T) => number): number {
  let n = 0;
  for (const t of items) n += f(t);
  return n;
}
