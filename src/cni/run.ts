// One CNI command from its env + stdin to its stdout + exit code, without touching the process:
// the plugin executable (main.ts) runs it for itself, and vpc-ipamd runs it for the shim
// (src/cni/shim: the executable the runtime calls forwards env + stdin over the socket), so every
// CNI semantic — spec versions, chaining, prevResult, errors, GC, STATUS — lives here once.
import { statSync } from 'node:fs';
import { spawnRunner } from '../netutils/exec.ts';
import { createIpTool } from '../netutils/ip.ts';
import { type CniEnv, DEFAULTS, decodeStdin, type PluginConfig, parseConfig, parseEnv } from './config.ts';
import type { DaemonClient } from './daemon-client.ts';
import { createFileLog, logFileProblem, type PluginLog } from './file-log.ts';
import { cmdAdd, cmdCheck, cmdDel, cmdGc, cmdStatus, type PluginDeps, versionInfo } from './plugin.ts';
import { CniError, ErrorCode, formatError, isSupportedVersion, LATEST_VERSION } from './spec.ts';

export interface CniOutcome {
  /** What the plugin prints (one JSON line, or empty). */
  stdout: string;
  exitCode: 0 | 1;
}

export interface RunContext {
  /** The daemon, over its socket (the plugin) or in-process (the daemon running the shim's command). */
  daemon(conf: PluginConfig): DaemonClient;
  /** Where the command runs, for the log line. */
  via: 'plugin' | 'daemon';
  /** performance.now() when the command started (in the plugin: its process's age, the boot cost). */
  started: number;
  /** The shim applies wiring plans (PluginDeps.apply); absent: this process runs `ip`. */
  apply?: PluginDeps['apply'];
  /** The plan version the shim applies (PluginDeps.planVersion). */
  planVersion?: number;
  /** The daemon sweeps veths a DEL leaves (PluginDeps.leaveVeth). */
  leaveVeth?: PluginDeps['leaveVeth'];
}

const netnsExists = async (path: string) => {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
};

function dispatch(
  env: CniEnv,
  conf: PluginConfig,
  deps: PluginDeps,
): Promise<Record<string, unknown> | null> {
  switch (env.command) {
    case 'ADD':
      return cmdAdd(env, conf, deps);
    case 'DEL':
      return cmdDel(env, conf, deps);
    case 'CHECK':
      return cmdCheck(env, conf, deps);
    case 'GC':
      return cmdGc(conf, deps);
    case 'STATUS':
      return cmdStatus(conf, deps);
    default:
      return Promise.resolve(versionInfo(conf.cniVersion));
  }
}

export async function runCni(
  env: Readonly<Record<string, string | undefined>>,
  stdin: string,
  ctx: RunContext,
): Promise<CniOutcome> {
  const { started } = ctx;
  let version: string = LATEST_VERSION;
  let log: PluginLog = createFileLog(null, 'info');
  const line = (obj: unknown) => `${JSON.stringify(obj)}\n`;
  try {
    if (env.CNI_COMMAND === 'VERSION') {
      // VERSION may come with a minimal (or no) config; answer what we support.
      const raw = stdin.trim() === '' ? {} : decodeStdin(stdin);
      return {
        stdout: line(versionInfo(isSupportedVersion(raw.cniVersion) ? raw.cniVersion : LATEST_VERSION)),
        exitCode: 0,
      };
    }
    const raw = decodeStdin(stdin);
    if (typeof raw.cniVersion === 'string') version = raw.cniVersion;
    // Before the config is validated: only a log path that would pass validation is used.
    const logFile = logFileProblem(raw.logFile) === undefined ? (raw.logFile as string) : DEFAULTS.logFile;
    log = createFileLog(logFile, raw.logLevel === 'debug' ? 'debug' : 'info');
    const parsed = parseEnv(env);
    const fields = {
      cmd: parsed.command,
      containerId: parsed.containerId || undefined,
      ifName: parsed.ifName || undefined,
      via: ctx.via,
    };
    log.bind(fields);
    const conf = parseConfig(raw);
    log = createFileLog(conf.logFile, conf.logLevel);
    // bootMs: the plugin process's start to our first line of code (the runtime's bootstrap cost).
    log.bind(ctx.via === 'plugin' ? { ...fields, bootMs: Math.round(started * 10) / 10 } : fields);
    const deps: PluginDeps = { ip: createIpTool(spawnRunner), daemon: ctx.daemon(conf), netnsExists, log };
    if (ctx.apply) {
      deps.apply = ctx.apply;
      deps.planVersion = ctx.planVersion ?? 1;
      if (ctx.leaveVeth) deps.leaveVeth = ctx.leaveVeth;
    }
    const result = await dispatch(parsed, conf, deps);
    log.debug('done', { ms: Math.round(performance.now() - started) });
    return { stdout: result ? line(result) : '', exitCode: 0 };
  } catch (e) {
    const err =
      e instanceof CniError
        ? e
        : new CniError(ErrorCode.INTERNAL, `internal error: ${(e as Error)?.message ?? e}`);
    log.error(err.message, { code: err.code, ms: Math.round(performance.now() - started) });
    return { stdout: line(formatError(err, version)), exitCode: 1 };
  }
}
