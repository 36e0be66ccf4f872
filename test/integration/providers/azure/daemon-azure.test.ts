// The daemon's scenarios on Azure: the real Daemon and socket server on the real Azure provider,
// the real @azure/arm-network client, the HTTPS ARM fake and the Azure IMDS fake. After every
// step the cloud's state (ipConfigurations in ARM) must agree with what the daemon hands out.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Allocation, ApiError, PoolStatus } from '../../../../src/ipam-daemon/api-types.ts';
import { loadConfig, type WarmPoolConfig } from '../../../../src/ipam-daemon/config.ts';
import { Daemon } from '../../../../src/ipam-daemon/daemon.ts';
import { type SocketServer, startSocketServer } from '../../../../src/ipam-daemon/server.ts';
import { type AzureTestbed, startAzureTestbed } from '../../../fakes/arm-testbed.ts';
import { call, ManualClock, poolConfig, quietLogger } from '../../../unit/ipam-daemon/harness.ts';

interface Node {
  daemon: Daemon;
  server: SocketServer;
  socketPath: string;
  clock: ManualClock;
  stop(): Promise<void>;
}

async function startNode(
  tb: AzureTestbed,
  dir: string,
  pool: Partial<WarmPoolConfig>,
  clock = new ManualClock(),
): Promise<Node> {
  const daemon = new Daemon({
    provider: tb.provider(),
    pool: poolConfig({ warmIpTarget: 5, minGrowStep: 4, cooldownMs: 30_000, shrinkDelayMs: 0, ...pool }),
    clusterName: 'azure-test',
    podSubnetIds: null,
    podSecurityGroupIds: null,
    checkpointPath: join(dir, 'checkpoint.json'),
    logger: quietLogger,
    clock,
  });
  await daemon.start();
  const socketPath = join(dir, `ipamd-${Math.random().toString(36).slice(2)}.sock`);
  const server = await startSocketServer({ socketPath, daemon, logger: quietLogger });
  return {
    daemon,
    server,
    socketPath,
    clock,
    async stop() {
      await server.close();
      server.server.closeAllConnections();
      await daemon.stop(2000);
    },
  };
}

/** Secondary IPs per NIC as ARM holds them. */
function cloudSecondaries(tb: AzureTestbed): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const id of tb.vm.nicIds) {
    const nic = tb.arm.nic(tb.resourceGroup, id.split('/').at(-1)!)!;
    out.set(
      id,
      nic.ipConfigs
        .filter((c) => !c.primary)
        .map((c) => c.privateIPAddress)
        .sort(),
    );
  }
  return out;
}

function primaries(tb: AzureTestbed): string[] {
  return tb.vm.nicIds.map(
    (id) =>
      tb.arm.nic(tb.resourceGroup, id.split('/').at(-1)!)!.ipConfigs.find((c) => c.primary)!.privateIPAddress,
  );
}

/** Converge: reconcile until the engine has nothing left to do (bounded). */
async function settle(n: Node): Promise<void> {
  for (let i = 0; i < 6; i++) await n.daemon.reconcileNow();
}

function assertCloudAgrees(tb: AzureTestbed, n: Node): void {
  const status = n.daemon.status();
  const cloud = cloudSecondaries(tb);
  let total = 0;
  for (const [, ips] of cloud) total += ips.length;
  assert.equal(status.total, total, 'the daemon counts exactly the IPs ARM holds');
  for (const i of status.interfaces) {
    assert.equal(i.total, cloud.get(i.interfaceId)?.length ?? -1, `NIC ${i.interfaceId}`);
  }
  for (const a of n.daemon.list()) {
    assert.ok(cloud.get(a.interfaceId)?.includes(a.ip), `${a.ip} is on ${a.interfaceId} in ARM`);
  }
}

async function allocate(
  n: Node,
  containerId: string,
): Promise<{ status: number; body: Allocation | ApiError }> {
  const r = await call(n.socketPath, 'POST', '/v1/allocate', {
    containerId,
    ifName: 'eth0',
    podNamespace: 'default',
    podName: containerId,
  });
  return { status: r.status, body: r.body as Allocation | ApiError };
}

describe('daemon on Azure (ARM fake)', () => {
  let tb: AzureTestbed;
  let dir: string;
  before(async () => {
    tb = await startAzureTestbed();
    dir = await mkdtemp(join(tmpdir(), 'ipamd-azure-'));
  });
  after(async () => {
    await tb?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('warm pool, 20 concurrent pods, release + shrink, restart from checkpoint', async () => {
    let n = await startNode(tb, dir, {});
    try {
      await settle(n);
      const warm = n.daemon.status();
      assert.ok(warm.free >= 5, `warm pool holds WARM_IP_TARGET free IPs (free ${warm.free})`);
      assertCloudAgrees(tb, n);
      const puts = tb.arm.requests.filter((r) => r.method === 'PUT').length;
      assert.ok(puts >= 1 && puts <= 3, `grown in batches, not per IP (${puts} PUTs)`);

      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => allocate(n, `pod${i}`)));
      for (const r of results) assert.equal(r.status, 200, JSON.stringify(r.body));
      const allocs = results.map((r) => r.body as Allocation);
      assert.equal(new Set(allocs.map((a) => a.ip)).size, 20, 'no IP handed out twice');
      const node = await tb.provider().describeNode();
      for (const a of allocs) {
        assert.ok(!primaries(tb).includes(a.ip), 'never a NIC primary IP');
        assert.equal(a.subnetCidr, '10.240.0.0/24');
        assert.equal(a.gateway, '10.240.0.1');
        assert.deepEqual(a.vpcCidrs, node.vpcCidrs);
        const nic = tb.arm.nic(tb.resourceGroup, a.interfaceId.split('/').at(-1)!)!;
        assert.equal(a.interfaceMac, nic.macAddress.replaceAll('-', ':').toLowerCase());
        assert.equal(a.deviceIndex, tb.vm.nicIds.indexOf(a.interfaceId));
      }
      await settle(n);
      assertCloudAgrees(tb, n);
      assert.ok(n.daemon.status().free >= 5);

      // Release 17 of them: after the cooldown the pool gives the surplus back to ARM.
      const before = n.daemon.status().total;
      for (const a of allocs.slice(3)) {
        const r = await call(n.socketPath, 'POST', '/v1/release', {
          containerId: a.containerId,
          ifName: 'eth0',
        });
        assert.deepEqual(r.body, { released: a.ip });
      }
      n.clock.advance(31_000);
      await settle(n);
      const shrunk = n.daemon.status();
      assert.ok(shrunk.total < before, `shrunk from ${before} to ${shrunk.total}`);
      assert.equal(shrunk.assigned, 3);
      assertCloudAgrees(tb, n);

      // Restart: a new daemon and provider on the same checkpoint keep the 3 pods' IPs.
      const kept = allocs.slice(0, 3);
      await n.stop();
      n = await startNode(tb, dir, {}, n.clock);
      for (const a of kept) {
        const got = await call(
          n.socketPath,
          'GET',
          `/v1/allocation?containerId=${a.containerId}&ifName=eth0`,
        );
        assert.equal(got.status, 200);
        assert.equal((got.body as Allocation).ip, a.ip);
      }
      await settle(n);
      assertCloudAgrees(tb, n);
    } finally {
      await n.stop();
    }
  });

  test('ARM throttling during growth: pods still get IPs once the 429s pass', async () => {
    const sub = await mkdtemp(join(dir, 'throttle-'));
    const n = await startNode(tb, sub, { warmIpTarget: 1, minGrowStep: 1 });
    try {
      await settle(n);
      tb.arm.inject({ method: 'PUT', status: 429, retryAfterSeconds: 0, times: 2 });
      const from = tb.arm.requests.length;
      const results = await Promise.all(Array.from({ length: 6 }, (_, i) => allocate(n, `thr${i}`)));
      // Pods that had to wait may see NO_IP (retryable) while ARM throttles; retry like the runtime does.
      for (const [i, r] of results.entries()) {
        if (r.status !== 200) {
          assert.equal((r.body as ApiError).retryable, true);
          await settle(n);
          results[i] = await allocate(n, `thr${i}`);
        }
      }
      for (const r of results) assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.ok(
        tb.arm.requests.slice(from).some((r) => r.status === 429),
        'ARM did throttle',
      );
      assert.equal(new Set(results.map((r) => (r.body as Allocation).ip)).size, 6);
      await settle(n);
      assertCloudAgrees(tb, n);
      for (let i = 0; i < 6; i++)
        await call(n.socketPath, 'POST', '/v1/release', { containerId: `thr${i}`, ifName: 'eth0' });
    } finally {
      tb.arm.clearFaults();
      await n.stop();
    }
  });

  test('subnet exhaustion: NO_IP subnet-full, never a duplicate', async () => {
    // /28: 11 usable, 2 NIC primaries -> 9 pod IPs at most. Grow steps of 1 so the last free
    // address can be taken (ARM refuses a whole batch that does not fit).
    const small = await startAzureTestbed({ subnetPrefix: '10.240.0.0/28' });
    const sub = await mkdtemp(join(dir, 'small-'));
    const n = await startNode(small, sub, { warmIpTarget: 1, minGrowStep: 1, allocateWaitMs: 300 });
    try {
      await settle(n);
      const got: string[] = [];
      let noIp: ApiError | undefined;
      for (let i = 0; i < 12 && !noIp; i++) {
        const r = await allocate(n, `small${i}`);
        if (r.status === 200) got.push((r.body as Allocation).ip);
        else noIp = r.body as ApiError;
        await settle(n);
      }
      assert.ok(noIp, 'ran out');
      assert.equal(noIp.code, 'NO_IP');
      assert.equal(noIp.reason, 'subnet-full');
      assert.equal(got.length, 9, 'every usable address of the subnet was handed out');
      assert.equal(new Set(got).size, got.length);
      const status: PoolStatus = n.daemon.status();
      assert.equal(status.assigned, 9);
      assertCloudAgrees(small, n);
    } finally {
      await n.stop();
      await small.close();
    }
  });

  test('the Azure defaults from loadConfig (WARM_IP_TARGET=16, VPC_IPAM_MIN_GROW_STEP=16): one ARM PUT per 16 IPs as pods arrive one by one', async () => {
    // A testbed of its own: the NICs hold no IPs left by the other scenarios.
    const own = await startAzureTestbed();
    const sub = await mkdtemp(join(dir, 'step-'));
    const pool = loadConfig({ CLOUD_PROVIDER: 'azure' }).pool;
    assert.deepEqual([pool.warmIpTarget, pool.minGrowStep], [16, 16]);
    const n = await startNode(own, sub, pool);
    const nicPuts = () =>
      own.arm.requests.filter((r) => r.method === 'PUT' && r.path.includes('/networkInterfaces/')).length;
    try {
      const putsBefore = nicPuts();
      await settle(n);
      assert.equal(n.daemon.status().free, 16, 'the warm pool');
      const grows: number[] = [];
      let total = n.daemon.status().total;
      let puts = nicPuts();
      for (let i = 0; i < 40; i++) {
        const r = await allocate(n, `step${i}`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        await settle(n);
        const now = n.daemon.status().total;
        const p = nicPuts();
        if (now !== total) grows.push(now - total);
        assert.ok(p - puts <= (now > total ? 1 : 0), `pod ${i}: ${p - puts} PUTs for ${now - total} IPs`);
        total = now;
        puts = p;
        assert.ok(n.daemon.status().free >= 16, 'WARM_IP_TARGET free IPs kept');
      }
      // Past the first 16 the pool grows 16 at a time: pods 1, 17 and 33 each cost one PUT.
      assert.deepEqual(grows, [16, 16, 16], 'each grow brought 16 IPs');
      const all = nicPuts() - putsBefore;
      assert.equal(all, 4, `4 NIC PUTs for 40 pods + 16 warm (the warm fill and 3 grows), got ${all}`);
      assertCloudAgrees(own, n);
      for (let i = 0; i < 40; i++)
        await call(n.socketPath, 'POST', '/v1/release', { containerId: `step${i}`, ifName: 'eth0' });
    } finally {
      await n.stop();
      await own.close();
    }
  });

  test('the Azure default (WARM_IP_TARGET=16 from loadConfig) fills a small subnet: batches are capped at its free count', async () => {
    // /28: 9 pod IPs at most. A batch of 16 would be refused whole (SubnetIsFull) and the node
    // would get nothing; capped at the subnet's free count it gets all 9, with no refused PUT.
    const small = await startAzureTestbed({ subnetPrefix: '10.240.0.0/28' });
    const sub = await mkdtemp(join(dir, 'default-'));
    const pool = loadConfig({ CLOUD_PROVIDER: 'azure' }).pool;
    assert.equal(pool.warmIpTarget, 16);
    const n = await startNode(small, sub, { ...pool, shrinkDelayMs: 0, allocateWaitMs: 300 });
    try {
      await settle(n);
      assert.equal(n.daemon.status().total, 9, 'the first batch took every free address');
      const got: string[] = [];
      let noIp: ApiError | undefined;
      for (let i = 0; i < 12 && !noIp; i++) {
        const r = await allocate(n, `dflt${i}`);
        if (r.status === 200) got.push((r.body as Allocation).ip);
        else noIp = r.body as ApiError;
      }
      assert.equal(got.length, 9);
      assert.equal(new Set(got).size, 9);
      assert.equal(noIp?.reason, 'subnet-full');
      const refused = small.arm.requests.filter((r) => r.method === 'PUT' && r.status >= 400);
      assert.deepEqual(refused, [], 'no PUT was refused');
      assertCloudAgrees(small, n);
    } finally {
      await n.stop();
      await small.close();
    }
  });
});
