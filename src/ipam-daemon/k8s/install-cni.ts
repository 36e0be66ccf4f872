#!/usr/bin/env node
// Init-container step: installs the CNI executables (the shim the runtime calls, and the Node
// plugin it falls back to when the daemon is down, installed first) and the conflist on the host, each
// atomically (write a temp file in the target directory, fsync, rename), so the container runtime
// never runs a half-copied binary nor reads a half-written config.
//
// It also sets the node sysctls pod routing needs once, so the long-running daemon container can
// run with a read-only /proc/sys: IPv4 forwarding, and loose reverse path filtering on "all" (the
// kernel uses max(all, device), so it covers interfaces attached later). The init container is not
// privileged either: the chart mounts the host's /proc/sys/net at $CNI_SYSCTL_ROOT/net and gives
// it NET_ADMIN (ip_forward needs it; rp_filter only root).
//
// With CNI_WRITE_CONFLIST=false it leaves the conflist to the daemon, which writes it (with
// installConflist) only once it is ready, so the node stays NotReady and kubelet attempts no pod
// sandbox before then (the chart does this).
//
//   install-cni.ts  (env: CNI_PLUGIN_SOURCE, CNI_FALLBACK_SOURCE, CNI_CONFLIST_SOURCE, CNI_BIN_DIR, CNI_CONF_DIR,
//                    CNI_CONFLIST_NAME, CNI_WRITE_CONFLIST=true|false, CNI_SET_SYSCTLS=true|false,
//                    CNI_SYSCTL_ROOT=/proc/sys)
import { copyFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { atomicWrite, installConflist, readConflist } from './cni-files.ts';

export interface InstallOptions {
  pluginSource: string;
  /** The Node plugin the shim runs when the daemon cannot be reached; installed beside it. */
  fallbackSource: string;
  conflistSource: string;
  binDir: string;
  confDir: string;
  conflistName: string;
  /** false: the daemon writes the conflist once it is ready. */
  writeConflist: boolean;
  setSysctls: boolean;
  /** Where the node's /proc/sys is mounted (default /proc/sys). */
  sysctlRoot: string;
}

/** The sysctls set, as paths under /proc/sys (the daemon's node-setup plan asks for these only). */
export const NODE_SYSCTLS: readonly [string, string][] = [
  ['/proc/sys/net/ipv4/ip_forward', '1'],
  ['/proc/sys/net/ipv4/conf/all/rp_filter', '2'],
];

const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$/;

function absolute(name: string, value: string | undefined, fallback: string): string {
  const v = value === undefined || value === '' ? fallback : value;
  if (!v.startsWith('/') || v.split('/').includes('..') || v.includes('\0')) {
    throw new Error(`${name}=${JSON.stringify(v)} is invalid; accepted: an absolute path without ".."`);
  }
  return v;
}

export function installOptionsFromEnv(env: Readonly<Record<string, string | undefined>>): InstallOptions {
  const conflistName = env.CNI_CONFLIST_NAME || '10-vpc-ipam.conflist';
  if (!FILE_NAME.test(conflistName) || !conflistName.endsWith('.conflist')) {
    throw new Error(
      `CNI_CONFLIST_NAME=${JSON.stringify(conflistName)} is invalid; accepted: a file name ending in .conflist`,
    );
  }
  return {
    pluginSource: absolute('CNI_PLUGIN_SOURCE', env.CNI_PLUGIN_SOURCE, '/opt/vpc-ipam/bin/vpc-cni'),
    fallbackSource: absolute(
      'CNI_FALLBACK_SOURCE',
      env.CNI_FALLBACK_SOURCE,
      '/opt/vpc-ipam/bin/vpc-cni-node',
    ),
    conflistSource: absolute(
      'CNI_CONFLIST_SOURCE',
      env.CNI_CONFLIST_SOURCE,
      '/etc/vpc-ipam/cni/conflist.json',
    ),
    binDir: absolute('CNI_BIN_DIR', env.CNI_BIN_DIR, '/host/opt/cni/bin'),
    confDir: absolute('CNI_CONF_DIR', env.CNI_CONF_DIR, '/host/etc/cni/net.d'),
    conflistName,
    writeConflist: (env.CNI_WRITE_CONFLIST ?? 'true') !== 'false',
    setSysctls: (env.CNI_SET_SYSCTLS ?? 'true') !== 'false',
    sysctlRoot: absolute('CNI_SYSCTL_ROOT', env.CNI_SYSCTL_ROOT, '/proc/sys'),
  };
}

/** Write NODE_SYSCTLS under `root` (where the node's /proc/sys is mounted). */
export function writeNodeSysctls(root: string): void {
  for (const [path, value] of NODE_SYSCTLS) writeFileSync(join(root, path.slice('/proc/sys/'.length)), value);
}

export function installCni(opts: InstallOptions): {
  plugin: string;
  fallback: string;
  conflist: string | null;
} {
  // validated even when the daemon writes it: a broken ConfigMap fails here, loudly, first
  readConflist(opts.conflistSource);
  // The fallback first: the shim is never on the host without the plugin it runs when the daemon is down.
  const fallback = join(opts.binDir, basename(opts.fallbackSource));
  atomicWrite(fallback, (tmp) => copyFileSync(opts.fallbackSource, tmp), 0o755);
  const plugin = join(opts.binDir, basename(opts.pluginSource));
  atomicWrite(plugin, (tmp) => copyFileSync(opts.pluginSource, tmp), 0o755);
  const conf = opts.writeConflist
    ? installConflist(opts.conflistSource, join(opts.confDir, opts.conflistName))
    : null;
  if (opts.setSysctls) writeNodeSysctls(opts.sysctlRoot);
  return { plugin, fallback, conflist: conf };
}

if (import.meta.main) {
  try {
    const done = installCni(installOptionsFromEnv(process.env));
    process.stdout.write(`${JSON.stringify({ installed: done })}\n`);
  } catch (err) {
    process.stderr.write(`install-cni: ${(err as Error).message}\n`);
    process.exit(1);
  }
}
