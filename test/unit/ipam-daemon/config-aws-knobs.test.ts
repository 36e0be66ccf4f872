// The AWS VPC CNI variables added for issue 13: names, defaults, aliases and bad values.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../../../src/ipam-daemon/config.ts';

function issue(env: Record<string, string>): { variable: string; reason: string } {
  try {
    loadConfig(env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.issues[0]!;
  }
  assert.fail(`expected a ConfigError for ${JSON.stringify(env)}`);
}

describe('AWS VPC CNI knobs in loadConfig', () => {
  test('ENABLE_SUBNET_DISCOVERY defaults to true, as in the AWS plugin', () => {
    assert.equal(loadConfig({}).subnetDiscovery, true);
    assert.equal(loadConfig({ ENABLE_SUBNET_DISCOVERY: 'false' }).subnetDiscovery, false);
    assert.equal(issue({ ENABLE_SUBNET_DISCOVERY: 'maybe' }).variable, 'ENABLE_SUBNET_DISCOVERY');
  });

  test('ADDITIONAL_ENI_TAGS: a JSON object of strings; default {} (the AWS chart renders "{}")', () => {
    assert.deepEqual(loadConfig({}).extraInterfaceTags, {});
    assert.deepEqual(loadConfig({ ADDITIONAL_ENI_TAGS: '{}' }).extraInterfaceTags, {});
    assert.deepEqual(loadConfig({ ADDITIONAL_ENI_TAGS: '{"team":"a","env":""}' }).extraInterfaceTags, {
      team: 'a',
      env: '',
    });
    const bad: [string, RegExp][] = [
      ['{team: a}', /not valid JSON/],
      ['["a"]', /not a JSON object/],
      ['{"n": 1}', /non-string value/],
      ['{"aws:x": "1"}', /reserved/],
      ['{"vpc-ipam/cluster-name": "x"}', /reserved/],
      ['{"cluster.k8s.amazonaws.com/name": "x"}', /reserved/],
      [`{"${'k'.repeat(129)}": "x"}`, /1-128/],
      [`{"k": "${'v'.repeat(257)}"}`, /over 256/],
    ];
    for (const [raw, reason] of bad) {
      const i = issue({ ADDITIONAL_ENI_TAGS: raw });
      assert.equal(i.variable, 'ADDITIONAL_ENI_TAGS');
      assert.match(i.reason, reason, raw);
    }
  });

  test('AWS names read as aliases; the vpc-ipam name wins when both are set', () => {
    assert.equal(
      loadConfig({ AWS_EC2_ENDPOINT: 'https://ec2.example/' }).aws.ec2Endpoint,
      'https://ec2.example',
    );
    assert.equal(
      loadConfig({ AWS_EC2_ENDPOINT: 'https://a', VPC_IPAM_EC2_ENDPOINT: 'https://b' }).aws.ec2Endpoint,
      'https://b',
    );
    assert.equal(loadConfig({ AWS_VPC_K8S_CNI_LOGLEVEL: 'DEBUG' }).logLevel, 'debug');
    assert.equal(loadConfig({ AWS_VPC_K8S_CNI_LOGLEVEL: 'DEBUG', LOG_LEVEL: 'warn' }).logLevel, 'warn');
    assert.equal(issue({ AWS_VPC_K8S_CNI_LOGLEVEL: 'loud' }).variable, 'AWS_VPC_K8S_CNI_LOGLEVEL');
  });
});
