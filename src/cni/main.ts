// vpc-cni entry point: CNI env + stdin in, a spec-shaped result or error on stdout, exit code 0/1.
// Built into a single executable by scripts/build-cni.ts.
import { readFileSync, statSync, writeSync } from 'node:fs';
import { spawnRunner } from '../netutils/exec.ts';
import { createIpTool } from '../netutils/ip.ts';
import { type CniEnv, DEFAULTS, decodeStdin, type PluginConfig, parseConfig, parseEnv } from './config.ts';
import { createDaemonClient } from './daemon-client.ts';
import { createFileLog, type PluginLog } from './file-log.ts';
import { cmdAdd, cmdCheck, cmdDel, cmdGc, cmdStatus, type PluginDeps, versionInfo } from './plugin.ts';
import { CniError, ErrorCode, formatError, isSupportedVersion, LATEST_VERSION } from './spec.ts';

function readStdin(): string {
  try {
    return readFileSync(0, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EAGAIN' || (e as NodeJS.ErrnoException).code === 'EOF')
      return '';
    throw e;
  }
}

async function dispatch(
  env: CniEnv,
  conf: PluginConfig,
  log: PluginLog,
): Promise<Record<string, unknown> | null> {
  const deps: PluginDeps = {
    ip: createIpTool(spawnRunner),
    daemon: createDaemonClient(conf.socketPath, conf.timeoutMs),
    netnsExists: async (path) => {
      try {
        statSync(path);
        return true;
      } catch {
        return false;
      }
    },
    log,
  };
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
      return versionInfo(conf.cniVersion);
  }
}

async function main(): Promise<number> {
  const started = performance.now();
  let version: string = LATEST_VERSION;
  let log: PluginLog = createFileLog(null, 'info');
  const out = (obj: unknown) => writeSync(1, `${JSON.stringify(obj)}\n`);
  try {
    const command = process.env.CNI_COMMAND;
    const text = readStdin();
    if (command === 'VERSION') {
      // VERSION may come with a minimal (or no) config; answer what we support.
      const raw = text.trim() === '' ? {} : decodeStdin(text);
      out(versionInfo(isSupportedVersion(raw.cniVersion) ? raw.cniVersion : LATEST_VERSION));
      return 0;
    }
    const raw = decodeStdin(text);
    if (typeof raw.cniVersion === 'string') version = raw.cniVersion;
    const logFile =
      typeof raw.logFile === 'string' && raw.logFile.startsWith('/') ? raw.logFile : DEFAULTS.logFile;
    log = createFileLog(logFile, raw.logLevel === 'debug' ? 'debug' : 'info');
    const env = parseEnv(process.env);
    log.bind({
      cmd: env.command,
      containerId: env.containerId || undefined,
      ifName: env.ifName || undefined,
    });
    const conf = parseConfig(raw);
    log = createFileLog(conf.logFile, conf.logLevel);
    log.bind({
      cmd: env.command,
      containerId: env.containerId || undefined,
      ifName: env.ifName || undefined,
      // process start to our first line of code: the runtime's bootstrap cost
      bootMs: Math.round(started * 10) / 10,
    });
    const result = await dispatch(env, conf, log);
    if (result) out(result);
    log.debug('done', { ms: Math.round(performance.now() - started) });
    return 0;
  } catch (e) {
    const err =
      e instanceof CniError
        ? e
        : new CniError(ErrorCode.INTERNAL, `internal error: ${(e as Error)?.message ?? e}`);
    log.error(err.message, { code: err.code, ms: Math.round(performance.now() - started) });
    out(formatError(err, version));
    return 1;
  }
}

main().then(
  (code) => process.exit(code),
  () => process.exit(1),
);
