import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ApplyCancelledError } from '../../../src/cni/plugin.ts';
import type { NetPlan } from '../../../src/cni/wiring/net-ops.ts';
import {
  inProcessTransport,
  MAX_CNI_BODY_BYTES,
  parseAppliedReport,
  parseCniRequest,
  ShimSessions,
} from '../../../src/ipam-daemon/cni-host.ts';
import { apiRoutes, toApiError } from '../../../src/ipam-daemon/server.ts';
import { ValidationError } from '../../../src/ipam-daemon/validate.ts';
import { call, startHarness } from './harness.ts';

describe('POST /v1/cni request shape', () => {
  test('only CNI_* variables, strings, no NUL; stdin a string', () => {
    const ok = parseCniRequest({ env: { CNI_COMMAND: 'VERSION' }, stdin: '{}' });
    assert.deepEqual(ok, { env: { CNI_COMMAND: 'VERSION' }, stdin: '{}' });
    for (const bad of [
      null,
      [],
      'x',
      { env: [], stdin: '' },
      { env: { CNI_COMMAND: 'ADD' } },
      { env: { AWS_SECRET_ACCESS_KEY: 'x' }, stdin: '' },
      { env: { PATH: '/bin' }, stdin: '' },
      { env: { CNI_COMMAND: 1 }, stdin: '' },
      { env: { CNI_NETNS: '/var/run/netns/a\0b' }, stdin: '' },
      { env: { CNI_ARGS: 'x'.repeat(5000) }, stdin: '' },
    ]) {
      assert.throws(() => parseCniRequest(bad), ValidationError, JSON.stringify(bad).slice(0, 80));
    }
  });
});

describe('CNI commands run by the daemon', () => {
  test('VERSION, and bad env rejected with the CNI error code and nothing allocated', async () => {
    const h = await startHarness({ socket: true });
    try {
      await h.daemon.reconcileNow();
      const cni = (env: Record<string, string>, conf: Record<string, unknown>) =>
        call(h.socketPath, 'POST', '/v1/cni', { env, stdin: JSON.stringify(conf) });
      const v = await cni({ CNI_COMMAND: 'VERSION' }, { cniVersion: '1.0.0' });
      assert.equal(v.status, 200);
      const vb = v.body as { stdout: string; exitCode: number };
      assert.equal(vb.exitCode, 0);
      assert.ok(
        (JSON.parse(vb.stdout) as { supportedVersions: string[] }).supportedVersions.includes('1.1.0'),
      );
      const conf = { cniVersion: '1.0.0', name: 'vpc', type: 'vpc-cni', logFile: `${h.dir}/cni.log` };
      for (const [env, code] of [
        [
          {
            CNI_COMMAND: 'ADD',
            CNI_CONTAINERID: '../etc',
            CNI_IFNAME: 'eth0',
            CNI_NETNS: '/var/run/netns/x',
          },
          4,
        ],
        [
          {
            CNI_COMMAND: 'ADD',
            CNI_CONTAINERID: 'abc',
            CNI_IFNAME: 'eth0/../x',
            CNI_NETNS: '/var/run/netns/x',
          },
          4,
        ],
        [{ CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc', CNI_IFNAME: 'eth0', CNI_NETNS: 'relative/ns' }, 4],
        [
          {
            CNI_COMMAND: 'ADD',
            CNI_CONTAINERID: 'abc',
            CNI_IFNAME: 'eth0',
            CNI_NETNS: '/nonexistent/netns/path',
          },
          4,
        ],
        [{ CNI_COMMAND: 'BOGUS' }, 4],
      ] as const) {
        const r = await cni(env, conf);
        assert.equal(r.status, 200, r.text);
        const b = r.body as { stdout: string; exitCode: number };
        assert.equal(b.exitCode, 1, JSON.stringify(env));
        assert.equal((JSON.parse(b.stdout) as { code: number }).code, code, b.stdout);
      }
      assert.equal(h.daemon.list().length, 0, 'nothing was allocated for a rejected command');
      // Not a CNI request at all: a 400, not a command.
      const bad = await call(h.socketPath, 'POST', '/v1/cni', { env: { LD_PRELOAD: '/x' }, stdin: '' });
      assert.equal(bad.status, 400);
      const big = await call(h.socketPath, 'POST', '/v1/cni', {
        env: {},
        stdin: 'x'.repeat(MAX_CNI_BODY_BYTES + 1),
      });
      assert.equal(big.status, 413);
    } finally {
      await h.close();
    }
  });

  test('the in-process transport answers like the socket: validation, 404, readiness, allocate', async () => {
    const h = await startHarness();
    try {
      await h.daemon.reconcileNow();
      const t = inProcessTransport(apiRoutes(h.daemon), toApiError);
      assert.equal((await t('POST', '/v1/allocate', { containerId: '../x', ifName: 'eth0' })).status, 400);
      assert.equal((await t('GET', '/v1/allocation?containerId=abc&ifName=eth0')).status, 404);
      assert.equal((await t('GET', '/readyz')).status, 200);
      const a = await t('POST', '/v1/allocate', {
        containerId: 'abc',
        ifName: 'eth0',
        podNamespace: 'default',
        podName: 'p',
      });
      assert.equal(a.status, 200);
      const got = await t('GET', '/v1/allocation?containerId=abc&ifName=eth0');
      assert.equal((got.body as { ip: string }).ip, (a.body as { ip: string }).ip);
      assert.deepEqual((await t('POST', '/v1/release', { containerId: 'abc', ifName: 'eth0' })).body, {
        released: (a.body as { ip: string }).ip,
      });
      assert.equal((await t('POST', '/v1/nope', {})).status, 404);
    } finally {
      await h.close();
    }
  });
});

describe('wiring applied by the shim (ShimSessions)', () => {
  const plan: NetPlan = { steps: [{ ops: [{ op: 'up', dev: 'vpc0123' }] }] };
  const final = (stdout: string) => ({ stdout, exitCode: 0 as const });

  test('a shim that says apply:1 gets the plan, and the ADD goes on only after its report', async () => {
    const sessions = new ShimSessions();
    let afterApply = false;
    const first = await sessions.start(async (apply) => {
      await apply(plan);
      afterApply = true;
      return final('done\n');
    });
    assert.ok('ticket' in first);
    assert.deepEqual(first.apply, plan);
    assert.equal(afterApply, false, 'nothing after the wiring runs before the report');
    assert.equal(sessions.size, 1);
    const next = await sessions.report({ ticket: first.ticket, error: null });
    assert.deepEqual(next, final('done\n'));
    assert.equal(sessions.size, 0);
    assert.throws(() => sessions.report({ ticket: first.ticket, error: null }), /unknown or expired/);
  });

  test("the shim's error rejects apply (the ADD rolls back); a retry hands out a second plan", async () => {
    const sessions = new ShimSessions();
    const errors: string[] = [];
    const first = await sessions.start(async (apply) => {
      try {
        await apply(plan);
      } catch (e) {
        errors.push((e as Error).message);
        await apply(plan);
      }
      return final('retried\n');
    });
    assert.ok('ticket' in first);
    const second = await sessions.report({ ticket: first.ticket, error: 'step 1 op 3 route: file exists' });
    assert.deepEqual(errors, ['step 1 op 3 route: file exists']);
    assert.ok('ticket' in second && second.ticket !== first.ticket);
    assert.deepEqual(await sessions.report({ ticket: second.ticket, error: null }), final('retried\n'));
  });

  test('no report in time: apply rejects, the ticket expires, a late report is refused', async () => {
    const sessions = new ShimSessions(30);
    let failure = '';
    const first = await sessions.start(async (apply) => {
      await apply(plan).catch((e: Error) => {
        failure = e.message;
      });
      return final('rolled back\n');
    });
    assert.ok('ticket' in first);
    await new Promise((r) => setTimeout(r, 80));
    assert.match(failure, /did not report the wiring within 30 ms/);
    assert.equal(sessions.size, 0);
    assert.throws(() => sessions.report({ ticket: first.ticket, error: null }), ValidationError);
  });

  test('a command without wiring answers directly; a bad plan is refused before it is sent', async () => {
    const sessions = new ShimSessions();
    assert.deepEqual(await sessions.start(async () => final('v\n')), final('v\n'));
    const bad = await sessions.start(async (apply) => {
      const r = await apply({ steps: [{ ops: [{ op: 'up', dev: 'a b' }] }] }).then(
        () => 'applied',
        (e: Error) => e.message,
      );
      return final(r);
    });
    assert.ok('stdout' in bad);
    assert.match(bad.stdout, /bad up op/);
    assert.equal(sessions.size, 0);
  });

  test('a command that throws still answers the shim (a CNI internal error), nothing unhandled', async () => {
    const a = await new ShimSessions().start(async () => {
      throw new Error('boom');
    });
    assert.ok('stdout' in a);
    assert.equal(a.exitCode, 1);
    assert.match(a.stdout, /"code":999.*internal error: boom/);
  });

  test('a DEL of the same attachment cancels an ADD waiting for its shim at once, and runs after it', async () => {
    const sessions = new ShimSessions(60_000); // the shim was kill -9'd: it will never report
    const order: string[] = [];
    let addFailure: unknown;
    const key = 'c1/eth0';
    const add = await sessions.start(
      async (apply) => {
        await apply(plan).catch((e: unknown) => {
          addFailure = e;
        });
        order.push('ADD ended');
        return final('add\n');
      },
      { command: 'ADD', key },
    );
    assert.ok('ticket' in add);
    const started = performance.now();
    const del = await sessions.serialize('DEL', key, undefined, async () => {
      order.push('DEL ran');
      return final('del\n');
    });
    assert.ok(performance.now() - started < 1_000, 'the DEL did not wait for the report timeout');
    assert.deepEqual(del, final('del\n'));
    assert.ok(addFailure instanceof ApplyCancelledError, String(addFailure));
    assert.match((addFailure as Error).message, /a later DEL of c1\/eth0 took over/);
    assert.deepEqual(order, ['ADD ended', 'DEL ran'], 'the DEL runs only once the ADD has stopped');
    assert.equal(sessions.size, 0);
    assert.throws(() => sessions.report({ ticket: add.ticket, error: null }), /unknown or expired/);
  });

  test('a retried DEL cancels a DEL waiting for its killed shim at once (it releases nothing), and runs after it', async () => {
    const sessions = new ShimSessions(60_000);
    const key = 'c1/eth0';
    const order: string[] = [];
    let firstFailure: unknown;
    const first = await sessions.start(
      async (apply) => {
        await apply(plan).then(
          () => order.push('first DEL released'),
          (e: unknown) => {
            firstFailure = e;
          },
        );
        order.push('first DEL ended');
        return final('del1\n');
      },
      { command: 'DEL', key },
    );
    assert.ok('ticket' in first);
    const started = performance.now();
    const retried = await sessions.start(
      async (apply) => {
        await apply(plan);
        order.push('retried DEL released');
        return final('del2\n');
      },
      { command: 'DEL', key },
    );
    assert.ok(performance.now() - started < 1_000, 'the retried DEL did not wait for the report timeout');
    assert.ok('ticket' in retried, 'the retried DEL hands out its own plan');
    assert.ok(firstFailure instanceof ApplyCancelledError, String(firstFailure));
    assert.match((firstFailure as Error).message, /^DEL cancelled: a later DEL of c1\/eth0 took over/);
    assert.deepEqual(await sessions.report({ ticket: retried.ticket, error: null }), final('del2\n'));
    assert.deepEqual(order, ['first DEL ended', 'retried DEL released']);
    assert.throws(() => sessions.report({ ticket: first.ticket, error: null }), /unknown or expired/);
  });

  test('a new ADD of the same attachment cancels the old one, even before it handed out its plan', async () => {
    const sessions = new ShimSessions(60_000);
    const key = 'c1/eth0';
    let allocated!: () => void;
    const allocating = new Promise<void>((r) => {
      allocated = r;
    });
    let oldFailure: unknown;
    // The old ADD is still allocating (its answer will never be read: the runtime gave up on it).
    void sessions.start(
      async (apply) => {
        await allocating;
        await apply(plan).catch((e: unknown) => {
          oldFailure = e;
        });
        return final('old\n');
      },
      { command: 'ADD', key },
    );
    const retried = sessions.start(
      async (apply) => {
        await apply(plan);
        return final('new\n');
      },
      { command: 'ADD', key },
    );
    allocated();
    const second = await retried;
    assert.ok(
      oldFailure instanceof ApplyCancelledError,
      'the old ADD hands out no plan after it was cancelled',
    );
    assert.ok('ticket' in second, 'the retried ADD gets its own plan');
    assert.equal(sessions.size, 1);
    assert.deepEqual(await sessions.report({ ticket: second.ticket, error: null }), final('new\n'));
  });

  test('without a plan (ipvlan, an older shim) the DEL of an attachment waits for its ADD to finish', async () => {
    const sessions = new ShimSessions(60_000);
    const order: string[] = [];
    let wired!: () => void;
    const wiring = new Promise<void>((r) => {
      wired = r;
    });
    const add = sessions.serialize('ADD', 'c1/eth0', undefined, async () => {
      await wiring; // the daemon runs `ip` itself: nothing to cancel, the wiring completes
      order.push('ADD wired');
      return final('add\n');
    });
    const del = sessions.serialize('DEL', 'c1/eth0', undefined, async () => {
      order.push('DEL cleaned');
      return final('del\n');
    });
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(order, [], 'the DEL does not clean up under a running ADD');
    wired();
    await Promise.all([add, del]);
    assert.deepEqual(order, ['ADD wired', 'DEL cleaned']);
  });

  test('other attachments and CHECK cancel nothing; a late report after cancel is refused', async () => {
    const sessions = new ShimSessions(60_000);
    const add = await sessions.start(
      async (apply) => {
        await apply(plan);
        return final('a\n');
      },
      { command: 'ADD', key: 'c1/eth0' },
    );
    assert.ok('ticket' in add);
    await sessions.serialize('DEL', 'c2/eth0', undefined, async () => final('other\n'));
    await sessions.serialize('CHECK', 'c1/eth0', undefined, async () => final('check\n'));
    await sessions.serialize('DEL', 'c1/net1', undefined, async () => final('other if\n'));
    assert.equal(sessions.size, 1, 'still waiting for its own shim');
    assert.deepEqual(await sessions.report({ ticket: add.ticket, error: null }), final('a\n'));
  });

  test('a restarted daemon knows no ticket of the old one: the shim gets an error, nothing runs', () => {
    // The sessions live only in the process: a shim reporting to a new daemon is refused (it then
    // fails the ADD with "try again later"; the runtime's DEL cleans up through the new daemon).
    assert.throws(
      () => new ShimSessions().report({ ticket: '0b7e4f4c-3f7e-4e56-a0a4-4bb1c43d1f0e', error: null }),
      ValidationError,
    );
  });

  test('report and request shapes', () => {
    assert.deepEqual(parseCniRequest({ env: {}, stdin: '', apply: 1 }), { env: {}, stdin: '', apply: 1 });
    assert.throws(() => parseCniRequest({ env: {}, stdin: '', apply: '1' }), ValidationError);
    const ticket = '0b7e4f4c-3f7e-4e56-a0a4-4bb1c43d1f0e';
    assert.deepEqual(parseAppliedReport({ ticket, error: null }), { ticket, error: null });
    // Plan version 3: the ifindex of each link a routeDel named (a Go nil map is JSON null).
    assert.deepEqual(parseAppliedReport({ ticket, error: null, links: null }), { ticket, error: null });
    assert.deepEqual(parseAppliedReport({ ticket, error: null, links: { vpc0123456789a: 42 } }), {
      ticket,
      error: null,
      links: { vpc0123456789a: 42 },
    });
    const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`v${i}`, i + 1]));
    for (const bad of [
      null,
      {},
      { ticket: 'x', error: null },
      { ticket },
      { ticket, error: 3 },
      { ticket, error: null, links: [] },
      { ticket, error: null, links: { 'a b': 1 } },
      { ticket, error: null, links: { vpc1: 0 } },
      { ticket, error: null, links: { vpc1: '7' } },
      { ticket, error: null, links: many },
    ]) {
      assert.throws(() => parseAppliedReport(bad), ValidationError, JSON.stringify(bad));
    }
  });

  test("the shim's reported links resolve apply (a DEL learns the veth's ifindex)", async () => {
    const sessions = new ShimSessions();
    let got: unknown;
    const first = await sessions.start(async (apply) => {
      got = await apply(plan);
      return final('done\n');
    });
    assert.ok('ticket' in first);
    await sessions.report({ ticket: first.ticket, error: null, links: { vpc0123: 9 } });
    assert.deepEqual(got, { vpc0123: 9 });
  });
});
