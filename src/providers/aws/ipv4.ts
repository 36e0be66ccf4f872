// IPv4 arithmetic for subnet address selection. Pure.

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export function isIpv4(s: string): boolean {
  return IPV4.test(s);
}

export function ipToInt(ip: string): number {
  if (!isIpv4(ip)) throw new RangeError(`not an IPv4 address: ${JSON.stringify(ip)}`);
  return ip.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export interface Cidr {
  network: number;
  prefix: number;
  size: number;
}

export function parseCidr(cidr: string): Cidr {
  const [ip, p] = cidr.split('/');
  const prefix = Number(p);
  if (ip === undefined || !Number.isInteger(prefix) || prefix < 0 || prefix > 32) {
    throw new RangeError(`not an IPv4 CIDR: ${JSON.stringify(cidr)}`);
  }
  const size = 2 ** (32 - prefix);
  const network = ipToInt(ip) - (ipToInt(ip) % size);
  return { network, prefix, size };
}

export function cidrContains(cidr: string, ip: string): boolean {
  const c = parseCidr(cidr);
  const n = ipToInt(ip);
  return n >= c.network && n < c.network + c.size;
}

/**
 * Whether AWS reserves the address: the network address, the next three (router, DNS, future)
 * and the broadcast address of every subnet.
 */
export function isReservedInSubnet(cidr: string, ip: string): boolean {
  const c = parseCidr(cidr);
  const off = ipToInt(ip) - c.network;
  return off < 4 || off === c.size - 1;
}

/** The first usable host (the subnet router/gateway is network + 1). */
export function subnetGateway(cidr: string): string {
  return intToIp(parseCidr(cidr).network + 1);
}

/** Up to `count` usable addresses of the subnet not in `taken`, lowest first. */
export function pickFreeAddresses(cidr: string, taken: ReadonlySet<string>, count: number): string[] {
  const c = parseCidr(cidr);
  const out: string[] = [];
  for (let off = 4; off < c.size - 1 && out.length < count; off++) {
    const ip = intToIp(c.network + off);
    if (!taken.has(ip)) out.push(ip);
  }
  return out;
}

/** Usable addresses in a subnet of this CIDR (size minus AWS's five reserved). */
export function usableAddressCount(cidr: string): number {
  return Math.max(0, parseCidr(cidr).size - 5);
}
