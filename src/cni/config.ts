// The plugin's network configuration (stdin) and environment: parsed and validated into plain
// values, with spec error codes (4 env, 6 decode, 7 config). Pure.
import { DEFAULT_SOCKET_PATH } from '../ipam-daemon/api-types.ts';
import { HOST_VETH_PREFIX, validateVethPrefix } from '../netutils/names.ts';
import {
  ValidationError,
  validateAbsolutePath,
  validateCidr,
  validateContainerId,
  validateIfName,
  validateNetnsPath,
} from '../netutils/validate.ts';
import { logFileProblem } from './file-log.ts';
import {
  type CniDns,
  CniError,
  type CniResult,
  type CniVersion,
  ErrorCode,
  isSupportedVersion,
  parseResult,
  SUPPORTED_VERSIONS,
} from './spec.ts';

export type WiringMode = 'veth' | 'ipvlan';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

export interface ValidAttachment {
  containerId: string;
  ifName: string;
}

export interface PluginConfig {
  cniVersion: CniVersion;
  name: string;
  socketPath: string;
  mtu: number;
  /** Host veth name prefix (AWS_VPC_K8S_CNI_VETHPREFIX in the chart). */
  vethPrefix: string;
  mode: WiringMode;
  logFile: string;
  logLevel: LogLevel;
  timeoutMs: number;
  /** The shim (src/cni/shim/main.go): how long connecting to the daemon's socket may take. */
  connectTimeoutMs: number;
  /** The shim: how much longer than timeoutMs it waits for the daemon's answer (pool wait + wiring). */
  answerMarginMs: number;
  /** ipvlan mode: CIDRs (e.g. the service CIDR) the pod reaches through its veth to the host. */
  hostCidrs: string[];
  dns: CniDns | undefined;
  prevResult: CniResult | undefined;
  /** GC (1.1): attachments the runtime still knows for this network. */
  validAttachments: ValidAttachment[] | undefined;
}

export const DEFAULTS = {
  socketPath: DEFAULT_SOCKET_PATH,
  mtu: 9001,
  vethPrefix: HOST_VETH_PREFIX,
  mode: 'veth' as WiringMode,
  logFile: '/var/log/vpc-ipam/cni.log',
  logLevel: 'info' as LogLevel,
  timeoutMs: 30_000,
  connectTimeoutMs: 2_000,
  answerMarginMs: 15_000,
};

function bad(msg: string): never {
  throw new CniError(ErrorCode.INVALID_CONFIG, msg);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optString(conf: Record<string, unknown>, key: string): string | undefined {
  const v = conf[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') bad(`network config field "${key}" must be a non-empty string`);
  return v;
}

function optInt(conf: Record<string, unknown>, key: string, min: number, max: number): number | undefined {
  const v = conf[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    bad(`network config field "${key}" must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Decodes stdin. Only the version is needed for VERSION, so this is split from the full parse. */
export function decodeStdin(text: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CniError(ErrorCode.DECODE, `cannot decode network config: ${(e as Error).message}`);
  }
  if (!isObject(raw)) throw new CniError(ErrorCode.DECODE, 'network config must be a JSON object');
  return raw;
}

export function parseVersion(raw: Record<string, unknown>): CniVersion {
  const v = raw.cniVersion;
  if (!isSupportedVersion(v)) {
    throw new CniError(
      ErrorCode.INCOMPATIBLE_VERSION,
      `unsupported cniVersion ${JSON.stringify(v)}; supported: ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
  return v;
}

export function parseConfig(raw: Record<string, unknown>): PluginConfig {
  const cniVersion = parseVersion(raw);
  const name = optString(raw, 'name') ?? bad('network config field "name" is required');
  const mode = optString(raw, 'mode') ?? DEFAULTS.mode;
  if (mode !== 'veth' && mode !== 'ipvlan')
    bad(`network config field "mode" must be veth or ipvlan, got ${mode}`);
  const logLevel = optString(raw, 'logLevel') ?? DEFAULTS.logLevel;
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    bad(`network config field "logLevel" must be one of ${LOG_LEVELS.join(', ')}, got ${logLevel}`);
  }
  const socketPath = optString(raw, 'socketPath') ?? DEFAULTS.socketPath;
  const logFile = optString(raw, 'logFile') ?? DEFAULTS.logFile;
  const logProblem = logFileProblem(logFile);
  if (logProblem) bad(`network config field "logFile" ${logProblem}, got ${JSON.stringify(logFile)}`);
  for (const [k, p] of [['socketPath', socketPath]] as const) {
    try {
      validateAbsolutePath(p);
    } catch {
      bad(`network config field "${k}" must be an absolute path, got ${JSON.stringify(p)}`);
    }
  }
  let hostCidrs: string[] = [];
  if (raw.hostCidrs !== undefined) {
    if (!Array.isArray(raw.hostCidrs)) bad('network config field "hostCidrs" must be a list of CIDRs');
    hostCidrs = raw.hostCidrs.map((c) => {
      try {
        return validateCidr(String(c), 'hostCidrs entry');
      } catch (e) {
        return bad((e as Error).message);
      }
    });
  }
  const vethPrefix = optString(raw, 'vethPrefix') ?? DEFAULTS.vethPrefix;
  try {
    validateVethPrefix(vethPrefix);
  } catch (e) {
    bad(`network config field "vethPrefix" ${JSON.stringify(vethPrefix)}: ${(e as Error).message}`);
  }
  let prevResult: CniResult | undefined;
  if (raw.prevResult !== undefined) prevResult = parseResult(raw.prevResult);
  let validAttachments: ValidAttachment[] | undefined;
  const va = raw['cni.dev/valid-attachments'];
  if (va !== undefined) {
    if (!Array.isArray(va)) bad('"cni.dev/valid-attachments" must be a list');
    validAttachments = va.map((a, i) => {
      if (!isObject(a) || typeof a.containerID !== 'string' || typeof a.ifname !== 'string') {
        return bad(`"cni.dev/valid-attachments"[${i}] needs string containerID and ifname`);
      }
      return { containerId: a.containerID, ifName: a.ifname };
    });
  }
  return {
    cniVersion,
    name,
    socketPath,
    mtu: optInt(raw, 'mtu', 576, 9001) ?? DEFAULTS.mtu,
    vethPrefix,
    mode,
    logFile,
    logLevel: logLevel as LogLevel,
    timeoutMs: optInt(raw, 'timeoutMs', 100, 600_000) ?? DEFAULTS.timeoutMs,
    connectTimeoutMs: optInt(raw, 'connectTimeoutMs', 100, 600_000) ?? DEFAULTS.connectTimeoutMs,
    answerMarginMs: optInt(raw, 'answerMarginMs', 0, 600_000) ?? DEFAULTS.answerMarginMs,
    hostCidrs,
    dns: isObject(raw.dns) ? (raw.dns as CniDns) : undefined,
    prevResult,
    validAttachments,
  };
}

// --- environment ---

export const COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'] as const;
export type Command = (typeof COMMANDS)[number];

export interface CniEnv {
  command: Command;
  containerId: string;
  netns: string;
  ifName: string;
  podNamespace?: string;
  podName?: string;
  podUid?: string;
}

function envError(msg: string): never {
  throw new CniError(ErrorCode.INVALID_ENV, msg);
}

const K8S_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const K8S_UID = /^[0-9a-fA-F][0-9a-fA-F-]{0,63}$/;

/** Parses the CNI_* variables the command needs; names the variable and the accepted values. */
export function parseEnv(env: Readonly<Record<string, string | undefined>>): CniEnv {
  const command = env.CNI_COMMAND;
  if (!command || !(COMMANDS as readonly string[]).includes(command)) {
    envError(`CNI_COMMAND must be one of ${COMMANDS.join(', ')}, got ${JSON.stringify(command ?? '')}`);
  }
  const out: CniEnv = { command: command as Command, containerId: '', netns: '', ifName: '' };
  if (command === 'VERSION' || command === 'GC' || command === 'STATUS') return out;
  const check = <T>(name: string, fn: () => T): T => {
    try {
      return fn();
    } catch (e) {
      if (e instanceof ValidationError) envError(`${name}: ${e.message}`);
      throw e;
    }
  };
  const id = env.CNI_CONTAINERID ?? envError('CNI_CONTAINERID is required (the container id)');
  out.containerId = check('CNI_CONTAINERID', () => validateContainerId(id));
  const ifName =
    env.CNI_IFNAME ?? envError('CNI_IFNAME is required (the interface name in the pod, e.g. eth0)');
  out.ifName = check('CNI_IFNAME', () => validateIfName(ifName));
  const netns = env.CNI_NETNS ?? '';
  // DEL may come after the namespace is gone, with CNI_NETNS empty.
  if (netns === '' && command !== 'DEL') envError('CNI_NETNS is required (path of the network namespace)');
  if (netns !== '') out.netns = check('CNI_NETNS', () => validateNetnsPath(netns));
  for (const pair of (env.CNI_ARGS ?? '').split(';')) {
    const eq = pair.indexOf('=');
    if (eq < 0) continue;
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (key === 'K8S_POD_NAMESPACE' && K8S_NAME.test(value)) out.podNamespace = value;
    if (key === 'K8S_POD_NAME' && K8S_NAME.test(value)) out.podName = value;
    if (key === 'K8S_POD_UID' && K8S_UID.test(value)) out.podUid = value;
  }
  // The daemon files every address under its pod, so the pod watcher can take it back when the
  // pod goes: an ADD must say whose it is.
  if (command === 'ADD' && (!out.podNamespace || !out.podName)) {
    envError(
      'CNI_ARGS must carry the pod identity K8S_POD_NAMESPACE=<namespace>;K8S_POD_NAME=<name> (lowercase DNS names), as Kubernetes runtimes pass it',
    );
  }
  return out;
}
