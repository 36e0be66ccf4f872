// The install-cni init container sets the two node sysctls WITHOUT privilege, as the chart runs it:
// in a fresh network + mount namespace whose /proc/sys is read-only (as a container's is), with the
// namespace's /proc/sys/net bind-mounted elsewhere (the chart's hostPath /proc/sys/net), as root
// with every capability dropped but NET_ADMIN (setpriv). Without NET_ADMIN ip_forward cannot be
// written (so the chart must add it), and through the read-only /proc/sys nothing can (which is
// why the daemon's node-setup plan asks for no sysctl beyond these two, already set).
// Needs root, util-linux (unshare, setpriv). Fails (never skips) without them.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);
const installer = join(import.meta.dirname, '../../src/ipam-daemon/k8s/install-cni.ts');
const read = 'cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/conf/all/rp_filter | tr "\\n" " "';
const noCaps = 'setpriv --bounding-set -all --inh-caps=-all --ambient-caps=-all';

test('unprivileged install-cni (NET_ADMIN only, /proc/sys/net mounted) sets ip_forward and rp_filter', async () => {
  const script = [
    'set -e',
    'root=$(mktemp -d)',
    'mkdir -p "$root/net"',
    'mount --bind /proc/sys/net "$root/net"',
    'mount --bind -o ro /proc/sys /proc/sys',
    `echo "before $(${read})"`,
    'if (echo 1 > /proc/sys/net/ipv4/ip_forward) 2>/dev/null; then echo ro-write-succeeded; fi',
    `if ${noCaps} sh -c "echo 1 > $root/net/ipv4/ip_forward" 2>/dev/null; then echo no-cap-write-succeeded; fi`,
    `setpriv --bounding-set -all,+net_admin --inh-caps=-all --ambient-caps=-all ${process.execPath} -e 'const m = await import(process.argv[1]); m.writeNodeSysctls(process.argv[2]); console.log("installed")' ${installer} "$root"`,
    `echo "after $(${read})"`,
  ].join('\n');
  const { stdout } = await run(
    'unshare',
    ['--net', '--mount', '--propagation', 'private', 'sh', '-c', script],
    {
      timeout: 60_000,
    },
  );
  assert.match(stdout, /^before 0 [01] $/m, 'a fresh netns starts with forwarding off');
  assert.doesNotMatch(stdout, /ro-write-succeeded/, 'the container-like /proc/sys must be read-only');
  assert.doesNotMatch(stdout, /no-cap-write-succeeded/, 'ip_forward needs NET_ADMIN: the chart must add it');
  assert.match(stdout, /^installed$/m);
  assert.match(stdout, /^after 1 2 $/m);
});
