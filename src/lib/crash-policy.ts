// What a process does with an error nothing caught: log it as one structured fatal line and exit
// non-zero, so the supervisor (kubelet, systemd) restarts it from a consistent checkpoint. Never
// keep running in an unknown state, and never hang: the exit is forced after a short grace even if
// the log stream or a cleanup stalls.
import type { Logger } from './log.ts';

export const CRASH_EXIT_CODE = 70; // EX_SOFTWARE
const FORCE_EXIT_AFTER_MS = 2_000;

export function installCrashPolicy(
  log: Logger,
  exit: (code: number) => void = (code) => process.exit(code),
): void {
  let crashing = false;
  const crash = (kind: 'uncaughtException' | 'unhandledRejection', err: unknown) => {
    if (crashing) return;
    crashing = true;
    const e = err instanceof Error ? err : new Error(String(err));
    setTimeout(() => exit(CRASH_EXIT_CODE), FORCE_EXIT_AFTER_MS).unref();
    try {
      log.fatal({ err: e, kind }, `${kind}: exiting so the process restarts from its checkpoint`);
      log.flush(() => exit(CRASH_EXIT_CODE));
    } catch {
      exit(CRASH_EXIT_CODE);
    }
  };
  process.on('uncaughtException', (err) => crash('uncaughtException', err));
  process.on('unhandledRejection', (reason) => crash('unhandledRejection', reason));
}
