// The data-plane suites that need a stock kernel, run inside a VM (Debian's 6.1 kernel under
// qemu TCG through virtme-ng, see test/helpers/vm.ts and docs/data-plane.md). One boot, two phases:
// with iptables-nft, the full ipvlan suite (its SNAT checks included) and the routed veth suite;
// with iptables-legacy, the node setup suite and the same two again. VPC_IPAM_VM_SUITES picks
// others. Every test inside comes back as a subtest here, failures with the guest's message.
//
// Needs: root, scripts/setup.sh (kernel, qemu, virtme-ng), LocalStack on VPC_IPAM_EC2_ENDPOINT
// (the guest reaches it through a serial port). Fails (never skips) without them.
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { ensurePluginBuilt } from '../helpers/plugin-binary.ts';
import { ROOT, replayPhase, runInVm, type VmOutcome, type VmPhase, vmTools } from '../helpers/vm.ts';

const DATA_PLANE = ['test/e2e/ipvlan.vm.ts', 'test/e2e/local-vpc.test.ts'];
const DEFAULT_PHASES: VmPhase[] = [
  { label: 'ipvlan and routed veth, iptables-nft', iptables: 'nft', files: DATA_PLANE },
  {
    label: 'node setup, ipvlan and routed veth, iptables-legacy',
    iptables: 'legacy',
    files: ['test/e2e/node-setup.test.ts', ...DATA_PLANE],
  },
];

/**
 * VPC_IPAM_VM_SUITES picks other suites: `nft:<file>[+<file>...],legacy:<file>...`, one phase per
 * comma-separated entry (scripts/test-vm.sh).
 */
function phasesFromEnv(spec: string): VmPhase[] {
  return spec.split(',').map((entry) => {
    const m = /^(nft|legacy):([\w./+-]+)$/.exec(entry.trim());
    if (!m)
      throw new Error(
        `VPC_IPAM_VM_SUITES entry "${entry}": want nft:<file>[+<file>] or legacy:<file>[+<file>]`,
      );
    const files = m[2]!.split('+');
    return { label: `${files.join(' ')}, iptables-${m[1]}`, iptables: m[1] as 'nft' | 'legacy', files };
  });
}

const phases = process.env.VPC_IPAM_VM_SUITES
  ? phasesFromEnv(process.env.VPC_IPAM_VM_SUITES)
  : DEFAULT_PHASES;

// TCG is slow: one boot plus every phase, well above what the phases need when the host is idle.
const TIMEOUT_MS = 75 * 60_000;

describe('in a VM with a stock Debian kernel (qemu TCG, virtme-ng)', { timeout: TIMEOUT_MS + 60_000 }, () => {
  let outcome: VmOutcome;

  before(
    async () => {
      if (process.getuid?.() !== 0) throw new Error('the VM suites need root (the guest runs as the caller)');
      vmTools();
      await ensurePluginBuilt({ daemon: true }); // the guest sees the checkout read-only: build dist/ here
      outcome = await runInVm({
        phases,
        outDir: join(ROOT, '.run', 'vm', `run-${process.pid}`),
        timeoutMs: TIMEOUT_MS,
      });
      const total = Math.round(outcome.bootToEndMs / 1000);
      console.log(`# VM run (${outcome.kernel}): ${total} s from boot to power-off`);
      if (outcome.guestError && outcome.phases.every((p) => p.exitCode === null)) {
        throw new Error(`${outcome.guestError}; see ${outcome.consoleLog}`);
      }
    },
    { timeout: TIMEOUT_MS + 30_000 },
  );

  for (const [i, phase] of phases.entries()) {
    test(phase.label, (t) => replayPhase(t, outcome, i));
  }
});
