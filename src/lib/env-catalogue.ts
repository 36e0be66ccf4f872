// The pieces every environment-variable catalogue is built from (the daemon's DAEMON_ENV_VARS,
// its Kubernetes variables, the janitor's JANITOR_ENV_VARS): the entry type, the value parsers and
// the error that names the bad variable and what it accepts. Reading the env (defaults, aliases,
// what counts as unset) stays with each loader.

export type EnvGroup = 'cloud' | 'warm-pool' | 'daemon' | 'snat' | 'kubernetes' | 'observability';

export type Env = Readonly<Record<string, string | undefined>>;

export interface EnvVarSpec<T = unknown> {
  name: string;
  /** Older / alternative names read when `name` is unset. */
  aliases?: readonly string[];
  /** The value used when unset, as a string; null when unset means "not set" (feature off/derived). */
  default: string | null;
  /** Human description of the accepted values, quoted in errors. */
  accepted: string;
  description: string;
  group: EnvGroup;
  /** Throws a plain Error with a short reason; the loader wraps it into a ConfigError. */
  parse(raw: string): T;
}

export interface ConfigIssue {
  variable: string;
  value: string;
  accepted: string;
  reason: string;
}

/** A bad environment: names every offending variable and what it accepts. */
export class ConfigError extends Error {
  readonly issues: ConfigIssue[];
  /** The first offending variable (convenience for callers and tests). */
  readonly variable: string;
  readonly accepted: string;
  constructor(issues: ConfigIssue[]) {
    const lines = issues.map(
      (i) => `${i.variable}=${JSON.stringify(i.value)} is invalid (${i.reason}); accepted: ${i.accepted}`,
    );
    super(lines.length === 1 ? lines[0] : `invalid configuration:\n  ${lines.join('\n  ')}`);
    this.name = 'ConfigError';
    this.issues = issues;
    this.variable = issues[0]?.variable ?? '';
    this.accepted = issues[0]?.accepted ?? '';
  }
}

// ---- parsers: each returns the typed value or throws Error(short reason) ----

/** A whole number in min..max. */
export function int(min: number, max = Number.MAX_SAFE_INTEGER): (raw: string) => number {
  return (raw) => {
    if (!/^\d+$/.test(raw.trim())) throw new Error('not a whole number');
    const n = Number(raw.trim());
    if (n < min || n > max) throw new Error(`out of range ${min}..${max}`);
    return n;
  };
}

/** Seconds in min..max, decimals allowed. */
export function seconds(min: number, max: number): (raw: string) => number {
  return (raw) => {
    const t = raw.trim();
    if (!/^\d+(\.\d+)?$/.test(t)) throw new Error('not a non-negative number of seconds');
    const n = Number(t);
    if (n < min || n > max) throw new Error(`out of range ${min}..${max}`);
    return n;
  };
}

/** true/1/yes or false/0/no (any case); an empty value is false. */
export function bool(raw: string): boolean {
  const t = raw.trim().toLowerCase();
  if (t === 'true' || t === '1' || t === 'yes') return true;
  if (t === 'false' || t === '0' || t === 'no' || t === '') return false;
  throw new Error('not a boolean');
}

/** One of `values`, case-insensitive; returns the catalogue's spelling. */
export function oneOf<T extends string>(values: readonly T[]): (raw: string) => T {
  return (raw) => {
    const t = raw.trim().toLowerCase();
    const hit = values.find((v) => v === t);
    if (hit === undefined) throw new Error('unknown value');
    return hit;
  };
}

/** A trimmed value matching `pattern`; `what` completes "not ...". */
export function text(pattern: RegExp, what: string): (raw: string) => string {
  return (raw) => {
    const t = raw.trim();
    if (!pattern.test(t)) throw new Error(`not ${what}`);
    return t;
  };
}

/** Comma-separated items each matching `itemPattern`; blanks dropped, duplicates removed, order kept. */
export function list(itemPattern: RegExp, what: string): (raw: string) => string[] {
  return (raw) => {
    const items = splitList(raw);
    for (const item of items)
      if (!itemPattern.test(item)) throw new Error(`${JSON.stringify(item)} is not ${what}`);
    return [...new Set(items)];
  };
}

/** An http(s) URL without trailing slashes. */
export function url(raw: string): string {
  const t = raw.trim();
  let u: URL;
  try {
    u = new URL(t);
  } catch {
    throw new Error('not a URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme must be http or https');
  return t.replace(/\/+$/, '');
}

/** An absolute file path: no "..", no trailing slash, no NUL. */
export function absPath(raw: string): string {
  const t = raw.trim();
  if (!t.startsWith('/') || t.includes('\0') || t.split('/').includes('..') || t.endsWith('/')) {
    throw new Error('not an absolute file path without ".."');
  }
  return t;
}

/** IPv4 CIDR, normalised (host bits must be zero). */
export function parseIpv4Cidr(raw: string): string {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(raw.trim());
  if (!m) throw new Error(`${JSON.stringify(raw)} is not an IPv4 CIDR`);
  const octets = m.slice(1, 5).map(Number);
  const bits = Number(m[5]);
  if (octets.some((o) => o > 255) || bits > 32) throw new Error(`${JSON.stringify(raw)} is not an IPv4 CIDR`);
  const addr = octets.reduce((a, o) => a * 256 + o, 0);
  const size = 2 ** (32 - bits);
  if (addr % size !== 0) throw new Error(`${JSON.stringify(raw)} has host bits set`);
  return `${octets.join('.')}/${bits}`;
}

/** Comma-separated IPv4 CIDRs, normalised; blanks dropped, duplicates removed, order kept. */
export function cidrList(raw: string): string[] {
  return [...new Set(splitList(raw).map(parseIpv4Cidr))];
}

function splitList(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** pino's levels, in the catalogues' documentation order. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
