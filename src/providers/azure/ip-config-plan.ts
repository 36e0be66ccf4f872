// Pure planning of a NIC's ipConfigurations: which to add for an assign, which to drop for an
// unassign. The provider reads the NIC, plans with these functions, and writes the whole list
// back in one createOrUpdate (ARM has no "add one ipConfiguration" call). The primary
// configuration is never changed or removed.
import { LimitExceededError } from '../errors.ts';

/** Azure's cap on IP configurations per NIC, the primary one included. */
export const MAX_IP_CONFIGS_PER_NIC = 256;

export interface IpConfigView {
  name: string;
  /** Empty while ARM has not allocated it yet. */
  privateIPAddress: string;
  primary: boolean;
}

export interface NewIpConfig {
  name: string;
  /** Set for exact-address requests (Static); absent lets ARM pick (Dynamic). */
  privateIPAddress?: string;
}

export interface AddPlan {
  /** Configurations to append (nothing else changes). */
  add: NewIpConfig[];
  /** Every name this request owns, including ones a previous attempt already wrote. */
  names: string[];
  /** Requested exact addresses the NIC already holds (nothing to do for them). */
  alreadyPresent: string[];
}

/**
 * Plan an assign. `token` makes the new names unique to this request (vpc-ipam-<token>-<i>), so
 * a retry after a lost response can recognise what it already wrote instead of adding twice.
 */
export function planAdd(
  current: IpConfigView[],
  req: { count: number } | { ips: string[] },
  token: string,
  max: number = MAX_IP_CONFIGS_PER_NIC,
): AddPlan {
  if (!/^[a-z0-9]{1,16}$/.test(token))
    throw new TypeError(`bad ipConfiguration token ${JSON.stringify(token)}`);
  const prefix = `vpc-ipam-${token}-`;
  const mine = current.filter((c) => c.name.startsWith(prefix));
  const names = (n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
  let add: NewIpConfig[];
  let alreadyPresent: string[] = [];
  if ('count' in req) {
    if (!Number.isInteger(req.count) || req.count < 1)
      throw new RangeError(`count must be an integer >= 1, got ${req.count}`);
    const all = names(req.count);
    const have = new Set(mine.map((c) => c.name));
    add = all.filter((n) => !have.has(n)).map((name) => ({ name }));
    return withinLimit(current, add, all, alreadyPresent, max);
  }
  if (req.ips.length === 0) throw new RangeError('ips must not be empty');
  const held = new Map(current.map((c) => [c.privateIPAddress, c]));
  const primaryIp = current.find((c) => c.primary)?.privateIPAddress;
  alreadyPresent = [...new Set(req.ips.filter((ip) => held.has(ip)))];
  if (primaryIp && alreadyPresent.includes(primaryIp)) {
    throw new RangeError(
      `${primaryIp} is the NIC's primary address and cannot be handed out as a secondary IP`,
    );
  }
  const wanted = [...new Set(req.ips)];
  const all = names(wanted.length);
  add = wanted
    .map((ip, i) => ({ name: all[i]!, privateIPAddress: ip }))
    .filter((c) => !held.has(c.privateIPAddress));
  return withinLimit(current, add, all, alreadyPresent, max);
}

function withinLimit(
  current: IpConfigView[],
  add: NewIpConfig[],
  names: string[],
  alreadyPresent: string[],
  max: number,
): AddPlan {
  if (current.length + add.length > max) {
    throw new LimitExceededError(
      `NIC holds ${current.length} IP configurations; adding ${add.length} would exceed Azure's limit of ${max} per NIC`,
      { cloudCode: 'IpConfigurationsPerNicLimit' },
    );
  }
  return { add, names, alreadyPresent };
}

export interface RemovePlan {
  /** Names of the configurations to drop. */
  remove: string[];
  /** Requested addresses the NIC does not hold (already gone: nothing to do). */
  absent: string[];
}

export function planRemove(current: IpConfigView[], ips: string[]): RemovePlan {
  const primaryIp = current.find((c) => c.primary)?.privateIPAddress;
  if (primaryIp && ips.includes(primaryIp)) {
    throw new RangeError(`refusing to remove ${primaryIp}: it is the NIC's primary IP configuration`);
  }
  const wanted = new Set(ips);
  const remove = current.filter((c) => !c.primary && wanted.has(c.privateIPAddress)).map((c) => c.name);
  const held = new Set(current.map((c) => c.privateIPAddress));
  return { remove, absent: [...wanted].filter((ip) => !held.has(ip)) };
}
