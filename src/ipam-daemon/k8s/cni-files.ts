// Atomic installs into the host's CNI directories (temp file in the target directory, fsync,
// rename: the runtime never runs a half-copied binary nor reads a half-written config), shared by
// the install-cni init step and the daemon, which writes the conflist once it is ready. No CLI here:
// the daemon bundle imports this module.
import { chmodSync, closeSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';

export function atomicWrite(target: string, write: (tmp: string) => void, mode: number): void {
  const tmp = join(target, '..', `.${basename(target)}.tmp-${process.pid}`);
  write(tmp);
  chmodSync(tmp, mode);
  const fd = openSync(tmp, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, target);
}

/** Reads and checks a conflist (a "plugins" list at least); throws naming the file otherwise. */
export function readConflist(source: string): unknown {
  const parsed = JSON.parse(readFileSync(source, 'utf8')) as { plugins?: unknown };
  if (!Array.isArray(parsed.plugins) || parsed.plugins.length === 0) {
    throw new Error(`${source} is not a CNI conflist (no "plugins" list)`);
  }
  return parsed;
}

/** Installs the conflist at target atomically (validated first); the daemon calls it once ready. */
export function installConflist(source: string, target: string): string {
  const parsed = readConflist(source);
  atomicWrite(target, (tmp) => writeFileSync(tmp, `${JSON.stringify(parsed, null, 2)}\n`), 0o644);
  return target;
}
