// sysctl by writing /proc/sys directly: no process, and /proc/sys/net is the caller's netns.
// Keys are given as segments (['net','ipv4','conf','eth1','rp_filter']) because interface names
// may contain dots.
import { readFile, writeFile } from 'node:fs/promises';

export interface SysctlTool {
  get(key: readonly string[]): Promise<string | null>;
  /** Writes only when the value differs; returns true when it changed something. */
  ensure(key: readonly string[], value: string): Promise<boolean>;
}

const SEGMENT = /^[A-Za-z0-9_.@-]{1,64}$/;

export function sysctlPath(key: readonly string[]): string {
  if (key.length < 2 || key.some((s) => !SEGMENT.test(s) || s === '.' || s === '..')) {
    throw new Error(`invalid sysctl key ${JSON.stringify(key)}`);
  }
  return `/proc/sys/${key.join('/')}`;
}

export function createSysctlTool(): SysctlTool {
  return {
    async get(key) {
      try {
        return (await readFile(sysctlPath(key), 'utf8')).trim();
      } catch {
        return null;
      }
    },
    async ensure(key, value) {
      const path = sysctlPath(key);
      const current = (await readFile(path, 'utf8')).trim();
      if (current === value) return false;
      await writeFile(path, `${value}\n`);
      return true;
    },
  };
}
