// The built plugin (dist/vpc-cni), rebuilt when its sources are newer: the e2e suites call the
// single executable exactly as a runtime would. A directory lock keeps parallel suites from
// building at the same time.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');
export const PLUGIN_BINARY = join(ROOT, 'dist', 'vpc-cni');

function newestSource(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    newest = Math.max(newest, e.isDirectory() ? newestSource(p) : statSync(p).mtimeMs);
  }
  return newest;
}

function builtAt(): number {
  try {
    return statSync(PLUGIN_BINARY).mtimeMs;
  } catch {
    return 0;
  }
}

export async function ensurePluginBuilt(): Promise<string> {
  const sources = Math.max(
    newestSource(join(ROOT, 'src', 'cni')),
    newestSource(join(ROOT, 'src', 'netutils')),
    statSync(join(ROOT, 'scripts', 'build-cni.ts')).mtimeMs,
    statSync(join(ROOT, 'src', 'ipam-daemon', 'api-types.ts')).mtimeMs, // bundled: the socket contract
  );
  if (builtAt() >= sources) return PLUGIN_BINARY;
  const lock = join(ROOT, 'dist', '.build.lock');
  mkdirSync(join(ROOT, 'dist'), { recursive: true });
  for (let i = 0; ; i++) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (i > 600) throw new Error(`plugin build lock ${lock} held for over a minute; remove it if stale`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  try {
    if (builtAt() < sources) {
      execFileSync(process.execPath, [join(ROOT, 'scripts', 'build-cni.ts')], { stdio: 'pipe', cwd: ROOT });
    }
  } finally {
    rmdirSync(lock);
  }
  return PLUGIN_BINARY;
}
