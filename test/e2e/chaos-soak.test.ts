// The chaos soak, short (the full one: `bash scripts/soak.sh`, results in docs/reliability.md):
// ADD/DEL through dist/vpc-cni on two local-VPC nodes while the daemons are kill -9'd, plugin
// processes killed mid-ADD and 20 % of EC2 calls fail through the fault proxy. Fails on any
// invariant violation (see test/soak/chaos.ts for the list). Needs root and LocalStack.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runSoak } from '../soak/chaos.ts';

test('short chaos soak: no invariant violated', { timeout: 600_000 }, async () => {
  const r = await runSoak({
    cycles: 60,
    kills: 6,
    maxMinutes: 4,
    log: (l) => process.stderr.write(`${l}\n`),
  });
  assert.deepEqual(r.violations, [], 'invariants violated');
  assert.ok(r.addsOk > 0, `no ADD got an address: ${JSON.stringify(r)}`);
  assert.ok(r.daemonKills >= 2 && r.daemonKillsDuringAdd >= 1, `too few kills: ${JSON.stringify(r)}`);
  assert.ok(r.faultsInjected > 0, 'no EC2 fault injected');
  assert.equal(r.settle.length, 2);
});
