// CNI spec I/O (versions 0.4.0 to 1.1.0): error codes, result shapes, conversion between the
// 0.4.0 and 1.x result formats. Pure; no I/O.

export const SUPPORTED_VERSIONS = ['0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

/** Well-known codes from the spec, plus ours (100+). */
export const ErrorCode = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  NOT_AVAILABLE: 50,
  // ours
  DAEMON_ERROR: 100,
  WIRING_FAILED: 101,
  CHECK_FAILED: 102,
  INTERNAL: 999,
} as const;

export class CniError extends Error {
  readonly code: number;
  readonly details: string;
  constructor(code: number, msg: string, details = '') {
    super(msg);
    this.name = 'CniError';
    this.code = code;
    this.details = details;
  }
}

export interface CniInterface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
}

/** The 1.x IP config; `interface` indexes Result.interfaces. */
export interface CniIpConfig {
  address: string;
  gateway?: string;
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
}

export interface CniDns {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** Result in the 1.x shape (our internal form). */
export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIpConfig[];
  routes?: CniRoute[];
  dns?: CniDns;
}

export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * prevResult[key] when present: a list of objects, each with the string `field` that list's entries
 * must have; anything else is a decode error naming the list or the entry.
 */
function entries<F extends string>(
  raw: Record<string, unknown>,
  key: string,
  field: F,
): (Record<string, unknown> & Record<F, string>)[] | undefined {
  const list = raw[key];
  if (list === undefined) return undefined;
  if (!Array.isArray(list)) throw new CniError(ErrorCode.DECODE, `prevResult.${key} is not a list`);
  return list.map((item, n) => {
    if (!isObject(item) || typeof item[field] !== 'string') {
      throw new CniError(ErrorCode.DECODE, `prevResult.${key}[${n}] has no ${field}`);
    }
    return item as Record<string, unknown> & Record<F, string>;
  });
}

/** Reads a prevResult of any supported version into the 1.x shape; throws CniError(6) on garbage. */
export function parseResult(raw: unknown): CniResult {
  if (!isObject(raw)) throw new CniError(ErrorCode.DECODE, 'prevResult is not an object');
  const version = typeof raw.cniVersion === 'string' ? raw.cniVersion : LATEST_VERSION;
  const out: CniResult = { cniVersion: version };
  const interfaces = entries(raw, 'interfaces', 'name');
  if (interfaces) {
    out.interfaces = interfaces.map((i) => {
      const iface: CniInterface = { name: i.name };
      if (typeof i.mac === 'string') iface.mac = i.mac;
      if (typeof i.mtu === 'number') iface.mtu = i.mtu;
      if (typeof i.sandbox === 'string') iface.sandbox = i.sandbox;
      return iface;
    });
  }
  const ips = entries(raw, 'ips', 'address');
  if (ips) {
    out.ips = ips.map((ip) => {
      const c: CniIpConfig = { address: ip.address };
      if (typeof ip.gateway === 'string') c.gateway = ip.gateway;
      if (typeof ip.interface === 'number') c.interface = ip.interface;
      return c;
    });
  }
  const routes = entries(raw, 'routes', 'dst');
  if (routes)
    out.routes = routes.map((r) => (typeof r.gw === 'string' ? { dst: r.dst, gw: r.gw } : { dst: r.dst }));
  if (isObject(raw.dns)) out.dns = raw.dns as CniDns;
  return out;
}

/** Serialises a result for the version the runtime asked for. */
export function formatResult(result: CniResult, version: CniVersion): Record<string, unknown> {
  const out: Record<string, unknown> = { cniVersion: version };
  if (result.interfaces) out.interfaces = result.interfaces;
  if (result.ips) {
    out.ips =
      version === '0.4.0'
        ? result.ips.map((ip) => ({ version: ip.address.includes(':') ? '6' : '4', ...ip }))
        : result.ips;
  }
  if (result.routes) out.routes = result.routes;
  out.dns = result.dns ?? {};
  return out;
}

export function formatError(err: CniError, version: string): Record<string, unknown> {
  const out: Record<string, unknown> = { cniVersion: version, code: err.code, msg: err.message };
  if (err.details) out.details = err.details;
  return out;
}

/** Appends our interfaces/ips/routes to a previous result (chaining), fixing interface indexes. */
export function mergeResult(prev: CniResult | undefined, ours: CniResult): CniResult {
  if (!prev) return ours;
  const offset = prev.interfaces?.length ?? 0;
  return {
    cniVersion: ours.cniVersion,
    interfaces: [...(prev.interfaces ?? []), ...(ours.interfaces ?? [])],
    ips: [
      ...(prev.ips ?? []),
      ...(ours.ips ?? []).map((ip) =>
        ip.interface === undefined ? ip : { ...ip, interface: ip.interface + offset },
      ),
    ],
    routes: [...(prev.routes ?? []), ...(ours.routes ?? [])],
    dns: ours.dns && Object.keys(ours.dns).length > 0 ? ours.dns : (prev.dns ?? {}),
  };
}
