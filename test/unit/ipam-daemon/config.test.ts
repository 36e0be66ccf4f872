import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ConfigError,
  DAEMON_ENV_VARS,
  daemonEnvVarNames,
  loadConfig,
} from '../../../src/ipam-daemon/config.ts';

describe('loadConfig', () => {
  test('defaults match the AWS VPC CNI where names are shared', () => {
    const c = loadConfig({});
    assert.equal(c.cloud, 'aws');
    assert.equal(c.pool.warmEniTarget, 1);
    assert.equal(c.pool.warmIpTarget, null);
    assert.equal(c.pool.minimumIpTarget, null);
    assert.equal(c.pool.maxEni, null);
    assert.equal(c.pool.cooldownMs, 30_000);
    assert.equal(c.socketPath, '/run/vpc-ipam/ipamd.sock');
    assert.deepEqual(c.metrics, { address: '127.0.0.1', port: 61678 });
    assert.equal(c.snat.externalSnat, false);
    assert.equal(c.snat.randomize, 'prng');
    assert.deepEqual(c.snat.excludeCidrs, []);
    assert.equal(c.podSubnetIds, null);
    assert.equal(c.aws.imdsTimeoutMs, 2000);
  });

  test('VPC_IPAM_IMDS_TIMEOUT: seconds, decimals allowed, bounded', () => {
    assert.equal(loadConfig({ VPC_IPAM_IMDS_TIMEOUT: '7.5' }).aws.imdsTimeoutMs, 7500);
    assert.throws(() => loadConfig({ VPC_IPAM_IMDS_TIMEOUT: '0' }), /VPC_IPAM_IMDS_TIMEOUT/);
    assert.throws(() => loadConfig({ VPC_IPAM_IMDS_TIMEOUT: 'soon' }), /VPC_IPAM_IMDS_TIMEOUT/);
  });

  test('parses every kind of value', () => {
    const c = loadConfig({
      CLOUD_PROVIDER: 'Azure',
      WARM_IP_TARGET: '0',
      MINIMUM_IP_TARGET: '10',
      MAX_ENI: '2',
      IP_COOLDOWN_PERIOD: '0',
      VPC_IPAM_SHRINK_DELAY: '0.5',
      POD_SUBNET_IDS: 'subnet-a, subnet-b,,subnet-a',
      AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS: '192.168.0.0/16,10.0.0.0/8',
      EXTERNAL_SNAT: 'true',
      METRICS_PORT: '0',
      VPC_IPAM_EC2_ENDPOINT: 'http://127.0.0.1:4566/',
      NODE_NAME: 'ip-10-0-0-1.ec2.internal',
    });
    assert.equal(c.cloud, 'azure');
    assert.equal(c.pool.warmIpTarget, 0);
    assert.equal(c.pool.minimumIpTarget, 10);
    assert.equal(c.pool.maxEni, 2);
    assert.equal(c.pool.cooldownMs, 0);
    assert.equal(c.pool.shrinkDelayMs, 500);
    assert.deepEqual(c.podSubnetIds, ['subnet-a', 'subnet-b']);
    assert.deepEqual(c.snat.excludeCidrs, ['192.168.0.0/16', '10.0.0.0/8']);
    assert.equal(c.snat.externalSnat, true, 'EXTERNAL_SNAT alias is honoured');
    assert.equal(c.metrics, null, 'METRICS_PORT=0 disables metrics');
    assert.equal(c.aws.ec2Endpoint, 'http://127.0.0.1:4566');
    assert.equal(c.kubernetes.nodeName, 'ip-10-0-0-1.ec2.internal');
  });

  test('Azure defaults to IP mode (WARM_IP_TARGET=16) unless WARM_IP_TARGET or MINIMUM_IP_TARGET is set', () => {
    const azure = loadConfig({ CLOUD_PROVIDER: 'azure' });
    assert.equal(azure.pool.warmIpTarget, 16);
    assert.equal(azure.pool.minimumIpTarget, null);
    assert.equal(azure.derivedDefaults?.length, 2);
    assert.match(azure.derivedDefaults?.[0] ?? '', /CLOUD_PROVIDER=azure .*WARM_IP_TARGET=16/);
    // The chart renders WARM_ENI_TARGET always and the others as "": still the Azure default.
    const chart = loadConfig({
      CLOUD_PROVIDER: 'azure',
      WARM_ENI_TARGET: '1',
      WARM_IP_TARGET: '',
      MINIMUM_IP_TARGET: '',
    });
    assert.equal(chart.pool.warmIpTarget, 16);
    // A chosen mode is kept as it is.
    const min = loadConfig({ CLOUD_PROVIDER: 'azure', MINIMUM_IP_TARGET: '30', VPC_IPAM_MIN_GROW_STEP: '4' });
    assert.deepEqual(
      [min.pool.warmIpTarget, min.pool.minimumIpTarget, min.derivedDefaults],
      [null, 30, undefined],
    );
    const warm = loadConfig({ CLOUD_PROVIDER: 'azure', WARM_IP_TARGET: '3' });
    assert.equal(warm.pool.warmIpTarget, 3);
    const eni = loadConfig({ CLOUD_PROVIDER: 'azure', WARM_IP_TARGET: '0', MINIMUM_IP_TARGET: '0' });
    assert.deepEqual([eni.pool.warmIpTarget, eni.pool.minimumIpTarget], [0, 0], 'both 0: ENI mode');
    // AWS keeps the AWS VPC CNI's default.
    const aws = loadConfig({ CLOUD_PROVIDER: 'aws' });
    assert.deepEqual([aws.pool.warmIpTarget, aws.derivedDefaults], [null, undefined]);
  });

  test('VPC_IPAM_MIN_GROW_STEP: 4 unset, 16 unset on Azure (logged), as set otherwise', () => {
    assert.equal(loadConfig({}).pool.minGrowStep, 4);
    assert.equal(loadConfig({ CLOUD_PROVIDER: 'aws', VPC_IPAM_MIN_GROW_STEP: '' }).pool.minGrowStep, 4);
    const azure = loadConfig({ CLOUD_PROVIDER: 'azure' });
    assert.equal(azure.pool.minGrowStep, 16);
    assert.ok(
      azure.derivedDefaults?.some((d) =>
        /CLOUD_PROVIDER=azure with VPC_IPAM_MIN_GROW_STEP unset: VPC_IPAM_MIN_GROW_STEP=16/.test(d),
      ),
      `logged as a derived default: ${JSON.stringify(azure.derivedDefaults)}`,
    );
    // The chart renders "" for unset: still the Azure default; independent of the IP-mode default.
    const chart = loadConfig({ CLOUD_PROVIDER: 'azure', VPC_IPAM_MIN_GROW_STEP: '', WARM_IP_TARGET: '3' });
    assert.deepEqual(
      [chart.pool.minGrowStep, chart.pool.warmIpTarget, chart.derivedDefaults?.length],
      [16, 3, 1],
    );
    // Set explicitly (to 4 too): kept, nothing derived.
    const set = loadConfig({ CLOUD_PROVIDER: 'azure', VPC_IPAM_MIN_GROW_STEP: '4', WARM_IP_TARGET: '3' });
    assert.deepEqual([set.pool.minGrowStep, set.derivedDefaults], [4, undefined]);
    assert.equal(loadConfig({ VPC_IPAM_MIN_GROW_STEP: '7' }).pool.minGrowStep, 7);
    // The catalogue tells both defaults.
    const spec = DAEMON_ENV_VARS.find((s) => s.name === 'VPC_IPAM_MIN_GROW_STEP');
    assert.match(spec?.accepted ?? '', /unset: 4; on CLOUD_PROVIDER=azure, 16/);
    assert.throws(() => loadConfig({ VPC_IPAM_MIN_GROW_STEP: '0' }), /VPC_IPAM_MIN_GROW_STEP/);
  });

  test('the primary name wins over its alias', () => {
    const c = loadConfig({ AWS_VPC_K8S_CNI_EXTERNALSNAT: 'false', EXTERNAL_SNAT: 'true' });
    assert.equal(c.snat.externalSnat, false);
  });

  const bad: Array<[string, string]> = [
    ['CLOUD_PROVIDER', 'gcp'],
    ['WARM_ENI_TARGET', '-1'],
    ['WARM_IP_TARGET', 'lots'],
    ['MINIMUM_IP_TARGET', '1.5'],
    ['MAX_ENI', '0'],
    ['IP_COOLDOWN_PERIOD', '30s'],
    ['MAX_PODS', '0'],
    ['VPC_IPAM_SOCKET', 'relative/ipamd.sock'],
    ['VPC_IPAM_CHECKPOINT', '/var/lib/../etc/passwd'],
    ['LOG_LEVEL', 'verbose'],
    ['METRICS_PORT', '70000'],
    ['VPC_IPAM_EC2_ENDPOINT', 'ftp://x'],
    ['AWS_VPC_K8S_CNI_EXTERNALSNAT', 'maybe'],
    ['EXTERNAL_SNAT', 'maybe'],
    ['AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS', '10.0.0.1/8'],
    ['AWS_VPC_K8S_CNI_RANDOMIZESNAT', 'random'],
    ['NODE_NAME', 'Not_A_Node'],
    ['CLUSTER_NAME', 'bad name'],
    ['VPC_IPAM_RECONCILE_INTERVAL', '0'],
  ];
  for (const [name, value] of bad) {
    test(`${name}=${value} is refused, naming the variable and the accepted values`, () => {
      const err = captureConfigError({ [name]: value });
      assert.equal(err.variable, name);
      const spec = DAEMON_ENV_VARS.find((s) => s.name === name || s.aliases?.includes(name));
      assert.ok(spec);
      assert.match(err.message, new RegExp(`^${name}=`));
      assert.ok(err.message.includes(spec.accepted), err.message);
    });
  }

  test('every bad variable is reported at once', () => {
    const err = captureConfigError({ WARM_ENI_TARGET: 'x', LOG_LEVEL: 'loud' });
    assert.deepEqual(err.issues.map((i) => i.variable).sort(), ['LOG_LEVEL', 'WARM_ENI_TARGET']);
  });

  test('the catalogue is complete and unique', () => {
    const names = daemonEnvVarNames(true);
    assert.equal(new Set(names).size, names.length);
    for (const s of DAEMON_ENV_VARS) {
      assert.ok(s.description.length > 10, s.name);
      assert.ok(s.accepted.length > 0, s.name);
      if (s.default !== null) assert.doesNotThrow(() => s.parse(s.default as string), s.name);
    }
    for (const required of [
      'WARM_ENI_TARGET',
      'WARM_IP_TARGET',
      'MINIMUM_IP_TARGET',
      'MAX_ENI',
      'IP_COOLDOWN_PERIOD',
      'CLOUD_PROVIDER',
      'CLUSTER_NAME',
      'VPC_IPAM_SOCKET',
      'VPC_IPAM_CHECKPOINT',
      'METRICS_ADDRESS',
      'METRICS_PORT',
      'LOG_LEVEL',
      'VPC_IPAM_EC2_ENDPOINT',
      'VPC_IPAM_IMDS_ENDPOINT',
      'VPC_IPAM_IMDS_TIMEOUT',
      'AWS_REGION',
      'MAX_PODS',
      'POD_SUBNET_IDS',
      'POD_SECURITY_GROUP_IDS',
      'AWS_VPC_K8S_CNI_EXTERNALSNAT',
      'AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS',
      'AWS_VPC_K8S_CNI_RANDOMIZESNAT',
      'NODE_NAME',
      'ENABLE_POD_WATCH',
    ]) {
      assert.ok(names.includes(required), required);
    }
  });
});

function captureConfigError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err;
  }
  assert.fail(`expected a ConfigError for ${JSON.stringify(env)}`);
}
