// iproute2 behind a small API: batches through `ip -batch -` (one process for many changes),
// optionally inside another netns via `nsenter --net=<path>` (one exec, no extra process).
import { CommandError, type Runner, type RunResult } from './exec.ts';
import { validateNetnsPath } from './validate.ts';

export interface IpOptions {
  /** Run inside this network namespace (a path, e.g. /var/run/netns/x or /proc/<pid>/ns/net). */
  netns?: string;
  /** Keep going after a failing line (for best-effort cleanup). */
  force?: boolean;
}

export interface IpTool {
  /** Runs one batch; throws CommandError naming the failing line. */
  batch(lines: readonly string[][], options?: IpOptions): Promise<void>;
  /** Runs a batch with -force; returns the stderr lines that are not "already gone" noise. */
  batchBestEffort(lines: readonly string[][], options?: IpOptions): Promise<string[]>;
  /** `ip -j <args>` parsed; [] when the object does not exist (e.g. unknown device). */
  json<T = Record<string, unknown>>(args: readonly string[], options?: IpOptions): Promise<T[]>;
}

const GONE =
  /Cannot find device|No such file or directory|No such process|does not exist|Command failed -:\d+|Cannot assign requested address/;

export function isGoneError(stderrLine: string): boolean {
  return GONE.test(stderrLine);
}

/** Serialises argv lines for `ip -batch`; refuses tokens that the batch parser would split or mangle. */
export function toBatch(lines: readonly string[][]): string {
  return lines
    .map((argv) => {
      for (const a of argv) {
        if (a === '' || /[\s"'\\#]/.test(a)) throw new Error(`unsafe ip batch token ${JSON.stringify(a)}`);
      }
      return argv.join(' ');
    })
    .join('\n')
    .concat('\n');
}

export function createIpTool(runner: Runner, ipPath = 'ip', nsenterPath = 'nsenter'): IpTool {
  const exec = (args: string[], options: IpOptions, input?: string): Promise<RunResult> => {
    if (options.netns) {
      const ns = validateNetnsPath(options.netns);
      return runner(
        nsenterPath,
        [`--net=${ns}`, '--', ipPath, ...args],
        input === undefined ? {} : { input },
      );
    }
    return runner(ipPath, args, input === undefined ? {} : { input });
  };
  return {
    async batch(lines, options = {}) {
      if (lines.length === 0) return;
      const result = await exec(['-batch', '-'], options, toBatch(lines));
      if (result.code !== 0) {
        const where = options.netns ? ` (netns ${options.netns})` : '';
        throw new CommandError(`ip -batch${where}`, result);
      }
    },
    async batchBestEffort(lines, options = {}) {
      if (lines.length === 0) return [];
      const result = await exec(['-force', '-batch', '-'], { ...options, force: true }, toBatch(lines));
      if (result.code === 0) return [];
      return result.stderr
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l !== '' && !isGoneError(l));
    },
    async json<T>(args: readonly string[], options: IpOptions = {}) {
      const result = await exec(['-j', ...args], options);
      if (result.code !== 0) {
        if (isGoneError(result.stderr)) return [];
        throw new CommandError(`ip -j ${args.join(' ')}`, result);
      }
      const text = result.stdout.trim();
      return text === '' ? [] : (JSON.parse(text) as T[]);
    },
  };
}
