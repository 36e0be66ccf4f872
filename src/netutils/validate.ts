// Validation of everything that ends up as an argument to ip/iptables/nsenter. Inputs come from the
// container runtime or the daemon; a bad one is refused here with a message naming it.

const IFNAME = /^[A-Za-z0-9_.@-]{1,15}$/; // IFNAMSIZ 16 incl. NUL; no '/', ':', whitespace
/** Container ids: one rule for the plugin and the daemon (runtimes use 64 hex characters). */
export const MAX_CONTAINER_ID = 128;
const CONTAINER_ID = new RegExp(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,${MAX_CONTAINER_ID - 1}}$`);
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

export class ValidationError extends Error {
  override name = 'ValidationError';
}

export function validateIfName(name: string, what = 'interface name'): string {
  if (!IFNAME.test(name) || name === '.' || name === '..') {
    throw new ValidationError(
      `invalid ${what} ${JSON.stringify(name)}: 1-15 characters of A-Z a-z 0-9 _ . - @, not "." or ".."`,
    );
  }
  return name;
}

export function validateContainerId(id: string): string {
  if (!CONTAINER_ID.test(id)) {
    throw new ValidationError(
      `invalid container id ${JSON.stringify(id)}: must start with a letter or digit and contain only A-Z a-z 0-9 _ . - (max ${MAX_CONTAINER_ID})`,
    );
  }
  return id;
}

/** A netns path the runtime gave: absolute, normalised, no NUL. Existence is checked by the caller. */
export function validateNetnsPath(path: string): string {
  return validateAbsolutePath(path, 'netns path');
}

export function validateAbsolutePath(path: string, what = 'path'): string {
  if (
    !path.startsWith('/') ||
    path.includes('\0') ||
    path.split('/').some((p) => p === '..' || p === '.') ||
    path.length > 4096
  ) {
    throw new ValidationError(
      `invalid ${what} ${JSON.stringify(path)}: must be an absolute path without . or ..`,
    );
  }
  return path;
}

export function validateMac(mac: string): string {
  const lower = mac.toLowerCase();
  if (!MAC.test(lower)) throw new ValidationError(`invalid MAC address ${JSON.stringify(mac)}`);
  return lower;
}

// --- IPv4 helpers (pure) ---

export function parseIpv4(ip: string): number | null {
  const parts = ip.split('.');
  if (parts.length !== 4) return null;
  let n = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    n = n * 256 + v;
  }
  return n;
}

export function formatIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function validateIpv4(ip: string, what = 'IPv4 address'): string {
  if (parseIpv4(ip) === null) throw new ValidationError(`invalid ${what} ${JSON.stringify(ip)}`);
  return ip;
}

export interface Cidr {
  base: number;
  prefix: number;
}

export function parseCidr(cidr: string): Cidr | null {
  const m = /^([0-9.]+)\/([0-9]{1,2})$/.exec(cidr);
  if (!m) return null;
  const ip = parseIpv4(m[1]!);
  const prefix = Number(m[2]);
  if (ip === null || prefix > 32) return null;
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return { base: (ip & mask) >>> 0, prefix };
}

/** Canonical form (host bits cleared), or a ValidationError. */
export function validateCidr(cidr: string, what = 'CIDR'): string {
  const c = parseCidr(cidr);
  if (!c) throw new ValidationError(`invalid ${what} ${JSON.stringify(cidr)}: expected a.b.c.d/n`);
  return `${formatIpv4(c.base)}/${c.prefix}`;
}

/** The subnet gateway as a VPC defines it: the first host address. */
export function firstHost(cidr: string): string {
  const c = parseCidr(cidr);
  if (!c) throw new ValidationError(`invalid CIDR ${JSON.stringify(cidr)}`);
  return formatIpv4(c.base + 1);
}

export function cidrContains(cidr: string, ip: string): boolean {
  const c = parseCidr(cidr);
  const n = parseIpv4(ip);
  if (!c || n === null) return false;
  const mask = c.prefix === 0 ? 0 : (0xffffffff << (32 - c.prefix)) >>> 0;
  return (n & mask) >>> 0 === c.base;
}
