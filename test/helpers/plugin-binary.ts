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

const DAEMON_BUNDLE = join(ROOT, 'dist', 'vpc-ipamd', 'vpc-ipamd.mjs');

function builtAt(daemon = false): number {
  try {
    const plugin = statSync(PLUGIN_BINARY).mtimeMs;
    return daemon ? Math.min(plugin, statSync(DAEMON_BUNDLE).mtimeMs) : plugin;
  } catch {
    return 0;
  }
}

/** daemon: the daemon bundle (dist/vpc-ipamd, same build) must be newer than every source too. */
export async function ensurePluginBuilt(opts: { daemon?: boolean } = {}): Promise<string> {
  // In the VM the checkout is read-only: the host built dist/ before booting it (test/helpers/vm.ts).
  if (process.env.VPC_IPAM_PLUGIN_PREBUILT === '1') {
    if (builtAt(opts.daemon) === 0)
      throw new Error(`${PLUGIN_BINARY} is missing and cannot be built here (read-only)`);
    return PLUGIN_BINARY;
  }
  const sources = Math.max(
    opts.daemon ? newestSource(join(ROOT, 'src')) : 0,
    newestSource(join(ROOT, 'src', 'cni')),
    newestSource(join(ROOT, 'src', 'netutils')),
    statSync(join(ROOT, 'scripts', 'build-cni.ts')).mtimeMs,
    statSync(join(ROOT, 'src', 'ipam-daemon', 'api-types.ts')).mtimeMs, // bundled: the socket contract
  );
  if (builtAt(opts.daemon) >= sources) return PLUGIN_BINARY;
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
    if (builtAt(opts.daemon) < sources) {
      execFileSync(process.execPath, [join(ROOT, 'scripts', 'build-cni.ts')], { stdio: 'pipe', cwd: ROOT });
    }
  } finally {
    rmdirSync(lock);
  }
  return PLUGIN_BINARY;
}
