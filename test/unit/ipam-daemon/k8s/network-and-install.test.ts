import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { installConflist } from '../../../../src/ipam-daemon/k8s/cni-files.ts';
import { installCni, installOptionsFromEnv } from '../../../../src/ipam-daemon/k8s/install-cni.ts';
import { parseNetworkConfig, selectNetworkConfig } from '../../../../src/ipam-daemon/k8s/network-config.ts';
import { eventReason } from '../../../../src/ipam-daemon/k8s/node-events.ts';

describe('PodNetworkConfig selection', () => {
  const cfg = (name: string, az: string | null = null) => ({
    name,
    subnetIds: [`subnet-${name}`],
    securityGroupIds: [],
    availabilityZone: az,
  });
  const configs = [cfg('us-east-1a'), cfg('zb-2', 'us-east-1b'), cfg('zb-1', 'us-east-1b'), cfg('special')];
  const labelKey = 'vpc-ipam.io/network-config';
  test('label first', () => {
    const s = selectNetworkConfig({
      nodeLabels: { [labelKey]: 'special' },
      labelKey,
      zone: 'us-east-1a',
      configs,
    });
    assert.equal(s.config?.name, 'special');
  });
  test('then a config named after the zone', () => {
    assert.equal(
      selectNetworkConfig({ nodeLabels: {}, labelKey, zone: 'us-east-1a', configs }).config?.name,
      'us-east-1a',
    );
  });
  test('then spec.availabilityZone, first by name', () => {
    const s = selectNetworkConfig({ nodeLabels: {}, labelKey, zone: 'us-east-1b', configs });
    assert.equal(s.config?.name, 'zb-1');
    assert.match(s.reason, /first of zb-1, zb-2/);
  });
  test('misses are errors with the cause', () => {
    const a = selectNetworkConfig({
      nodeLabels: { [labelKey]: 'nope' },
      labelKey,
      zone: 'us-east-1a',
      configs,
    });
    assert.equal(a.config, null);
    assert.match(a.reason, /names no PodNetworkConfig/);
    assert.match(
      selectNetworkConfig({ nodeLabels: {}, labelKey, zone: 'eu-west-1a', configs }).reason,
      /no PodNetworkConfig for zone/,
    );
    assert.match(selectNetworkConfig({ nodeLabels: {}, labelKey, zone: null, configs }).reason, /no zone/);
  });
  test('malformed objects are refused with a reason', () => {
    assert.match(
      String(parseNetworkConfig({ metadata: { name: 'x' }, spec: { subnetIds: [] } })),
      /at least one subnet/,
    );
    assert.match(
      String(
        parseNetworkConfig({ metadata: { name: 'x' }, spec: { subnetIds: ['s'], securityGroupIds: 'sg' } }),
      ),
      /list of ids/,
    );
    assert.equal(
      typeof parseNetworkConfig({ metadata: { name: 'x' }, spec: { subnetIds: ['s'] } }),
      'object',
    );
  });
});

test('event reasons from NO_IP reason codes', () => {
  assert.equal(eventReason('subnet-full'), 'NoIPSubnetFull');
  assert.equal(eventReason('max-eni'), 'NoIPMaxEni');
  assert.equal(eventReason(''), 'NoIPAvailable');
});

describe('install-cni', () => {
  test('installs the shim, its fallback (executables) and the conflist atomically, leaving no temp files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vpc-ipam-install-'));
    try {
      mkdirSync(join(dir, 'bin'));
      mkdirSync(join(dir, 'net.d'));
      writeFileSync(join(dir, 'vpc-cni'), '#!/bin/true\n');
      writeFileSync(join(dir, 'vpc-cni-node'), '#!/bin/false\n');
      writeFileSync(
        join(dir, 'conflist.json'),
        JSON.stringify({ cniVersion: '1.1.0', name: 'vpc-ipam', plugins: [{ type: 'vpc-cni' }] }),
      );
      const opts = installOptionsFromEnv({
        CNI_PLUGIN_SOURCE: join(dir, 'vpc-cni'),
        CNI_FALLBACK_SOURCE: join(dir, 'vpc-cni-node'),
        CNI_CONFLIST_SOURCE: join(dir, 'conflist.json'),
        CNI_BIN_DIR: join(dir, 'bin'),
        CNI_CONF_DIR: join(dir, 'net.d'),
        CNI_SET_SYSCTLS: 'false',
      });
      const out = installCni(opts);
      assert.equal(statSync(out.plugin).mode & 0o777, 0o755);
      assert.equal(statSync(out.fallback).mode & 0o777, 0o755);
      assert.equal(out.fallback, join(dir, 'bin', 'vpc-cni-node'));
      assert.equal(readFileSync(out.plugin, 'utf8'), '#!/bin/true\n');
      assert.deepEqual(readdirSync(join(dir, 'bin')).sort(), ['vpc-cni', 'vpc-cni-node']);
      assert.equal(JSON.parse(readFileSync(out.conflist!, 'utf8')).plugins[0].type, 'vpc-cni');
      assert.equal(out.conflist, join(dir, 'net.d', '10-vpc-ipam.conflist'));
      writeFileSync(join(dir, 'conflist.json'), '{"name":"x"}');
      assert.throws(() => installCni(opts), /not a CNI conflist/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test('CNI_WRITE_CONFLIST=false installs the executables only; the daemon writes the conflist later (installConflist)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vpc-ipam-install-'));
    try {
      mkdirSync(join(dir, 'bin'));
      mkdirSync(join(dir, 'net.d'));
      writeFileSync(join(dir, 'vpc-cni'), '#!/bin/true\n');
      writeFileSync(join(dir, 'vpc-cni-node'), '#!/bin/false\n');
      const source = join(dir, 'conflist.json');
      writeFileSync(
        source,
        JSON.stringify({ cniVersion: '1.0.0', name: 'vpc-ipam', plugins: [{ type: 'vpc-cni' }] }),
      );
      const opts = installOptionsFromEnv({
        CNI_PLUGIN_SOURCE: join(dir, 'vpc-cni'),
        CNI_FALLBACK_SOURCE: join(dir, 'vpc-cni-node'),
        CNI_CONFLIST_SOURCE: source,
        CNI_BIN_DIR: join(dir, 'bin'),
        CNI_CONF_DIR: join(dir, 'net.d'),
        CNI_WRITE_CONFLIST: 'false',
        CNI_SET_SYSCTLS: 'false',
      });
      const out = installCni(opts);
      assert.equal(out.conflist, null);
      assert.deepEqual(
        readdirSync(join(dir, 'net.d')),
        [],
        'no CNI config on the node yet: kubelet keeps it NotReady',
      );
      const target = join(dir, 'net.d', '10-vpc-ipam.conflist');
      assert.equal(installConflist(source, target), target);
      assert.equal(JSON.parse(readFileSync(target, 'utf8')).plugins[0].type, 'vpc-cni');
      assert.deepEqual(readdirSync(join(dir, 'net.d')), ['10-vpc-ipam.conflist'], 'no temp file left');
      // a broken ConfigMap still fails the init container, even though it writes no conflist
      writeFileSync(source, '{"name":"x"}');
      assert.throws(() => installCni(opts), /not a CNI conflist/);
      assert.throws(() => installConflist(source, target), /not a CNI conflist/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test('bad environment names the variable', () => {
    assert.throws(
      () => installOptionsFromEnv({ CNI_BIN_DIR: 'relative/dir' }),
      /CNI_BIN_DIR=.*absolute path/,
    );
    assert.throws(() => installOptionsFromEnv({ CNI_CONFLIST_NAME: '../x.conflist' }), /CNI_CONFLIST_NAME/);
  });
});
