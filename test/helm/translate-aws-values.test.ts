// scripts/translate-aws-values.ts (issue 13): a typical aws-node values file goes through the
// script (as a user runs it) and the result through `helm template` of our chart: every knob lands
// where the daemon reads it. Also: every variable of the AWS README has a rule and a row in
// docs/migrating-from-aws-vpc-cni.md, and a setting that cannot be carried over stops the script.
// Needs HELM_BIN (helm v4), like chart.test.ts.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { loadAllYaml, loadYaml } from '@kubernetes/client-node';
import { AWS_README_VARIABLES, RULES } from '../../scripts/translate-aws-values.ts';
import { daemonEnvVarNames } from '../../src/ipam-daemon/config.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const SCRIPT = join(ROOT, 'scripts/translate-aws-values.ts');
const FIXTURE = join(ROOT, 'test/fixtures/aws-vpc-cni-values.yaml');
const CHART = join(ROOT, 'helm/vpc-ipam');

// biome-ignore lint/suspicious/noExplicitAny: rendered manifests are walked structurally
type Json = any;
type Doc = {
  kind: string;
  metadata: { name: string; annotations?: Record<string, string> };
  spec?: Json;
  data?: Json;
};

describe('translate-aws-values: an aws-node values file to a rendered vpc-ipam chart', () => {
  let work: string;
  let out: { stdout: string; stderr: string };
  let docs: Doc[];
  const helm = () => {
    const h = process.env.HELM_BIN;
    if (!h)
      throw new Error(
        'HELM_BIN is not set: install helm v4 (scripts/setup.sh does) and point HELM_BIN at it',
      );
    return h;
  };

  before(async () => {
    work = mkdtempSync(join(tmpdir(), 'translate-'));
    out = await run(process.execPath, [SCRIPT, FIXTURE, '-o', join(work, 'values.yaml')]);
    const rendered = await run(helm(), [
      'template',
      'vpc',
      CHART,
      '--namespace',
      'kube-system',
      '-f',
      join(work, 'values.yaml'),
    ]);
    docs = (loadAllYaml(rendered.stdout) as (Doc | null)[]).filter((d): d is Doc => d !== null);
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  const find = (kind: string, suffix = '') => {
    const d = docs.find((x) => x.kind === kind && x.metadata.name.endsWith(suffix));
    assert.ok(d, `no ${kind} *${suffix}`);
    return d;
  };
  const daemonEnv = () =>
    Object.fromEntries(
      (find('DaemonSet').spec.template.spec.containers[0].env as { name: string; value?: string }[]).map(
        (e) => [e.name, e.value],
      ),
    );

  test('the daemon gets the knobs under the names it reads', () => {
    const env = daemonEnv();
    const expected: Record<string, string> = {
      CLUSTER_NAME: 'prod-eks',
      AWS_REGION: 'us-east-1',
      WARM_ENI_TARGET: '0',
      WARM_IP_TARGET: '5',
      MINIMUM_IP_TARGET: '20',
      IP_COOLDOWN_PERIOD: '45',
      AWS_VPC_K8S_CNI_EXTERNALSNAT: 'true',
      AWS_VPC_K8S_CNI_EXCLUDE_SNAT_CIDRS: '172.16.0.0/12',
      AWS_VPC_K8S_CNI_RANDOMIZESNAT: 'hashrandom',
      AWS_EXTERNAL_SERVICE_CIDRS: '198.51.100.0/24',
      ADDITIONAL_ENI_TAGS: '{"team": "payments", "env": "prod"}',
      VPC_IPAM_CUSTOM_NETWORKING: 'true',
      VPC_IPAM_NETWORK_CONFIG_LABEL: 'k8s.amazonaws.com/eniConfig',
      LOG_LEVEL: 'info',
      ENABLE_SUBNET_DISCOVERY: 'true',
    };
    for (const [k, v] of Object.entries(expected)) assert.equal(env[k], v, k);
    assert.equal(env.MAX_ENI, undefined, 'MAX_ENI=0 means unset there: left unset');
    // Every env name the chart renders is one the daemon accepts (no AWS-only name leaks through).
    const accepted = new Set(daemonEnvVarNames());
    assert.deepEqual(
      Object.keys(env).filter((k) => !accepted.has(k)),
      [],
    );
  });

  test('chart values: conflist MTU and log level, janitor off, IRSA, ENIConfigs as PodNetworkConfigs, scheduling', () => {
    const plugin = JSON.parse(find('ConfigMap', '-cni').data['conflist.json']).plugins[0];
    assert.equal(plugin.mtu, 8000, 'POD_MTU from extraEnv');
    assert.equal(plugin.logLevel, 'warn');
    assert.equal(plugin.vethPrefix, 'vpc', "vpc-ipam's own veths keep their prefix");
    const chained = JSON.parse(find('ConfigMap', '-cni').data['conflist.json']).plugins.map(
      (p: { type: string }) => p.type,
    );
    assert.deepEqual(chained, ['vpc-cni', 'bandwidth'], 'ENABLE_BANDWIDTH_PLUGIN chains bandwidth');
    assert.ok(
      !docs.some((d) => d.kind === 'Deployment' && d.metadata.name.endsWith('-janitor')),
      'janitor off',
    );
    assert.equal(
      find('ServiceAccount', '-daemon').metadata.annotations?.['eks.amazonaws.com/role-arn'],
      'arn:aws:iam::123456789012:role/prod-vpc-cni',
    );
    const pncs = docs.filter((d) => d.kind === 'PodNetworkConfig');
    assert.deepEqual(
      pncs.map((d) => [d.metadata.name, d.spec.subnetIds, d.spec.securityGroupIds ?? []]),
      [
        ['us-east-1a', ['subnet-0aaa1111'], ['sg-0ccc3333']],
        ['us-east-1b', ['subnet-0bbb2222'], []],
      ],
    );
    const pod = find('DaemonSet').spec.template.spec;
    // Helm merges maps: the chart's own os selector stays.
    assert.deepEqual(pod.nodeSelector, { 'kubernetes.io/os': 'linux', 'node.kubernetes.io/pool': 'general' });
  });

  test('notes on stderr name what was dropped and why; nothing lossy in a typical file', () => {
    assert.match(out.stderr, /note: VPC_CNI_VERSION: dropped/);
    assert.match(out.stderr, /note: DISABLE_LEAKED_ENI_CLEANUP: .*janitor.enabled=false/);
    assert.match(out.stderr, /note: AWS_VPC_K8S_CNI_LOG_FILE: the AWS default file/);
    assert.doesNotMatch(out.stderr, /LOSSY/);
    const values = loadYaml(readFileSync(join(work, 'values.yaml'), 'utf8')) as { daemon: { env: object } };
    assert.ok(!('AWS_VPC_ENI_MTU' in values.daemon.env), 'defaults are not repeated');
  });

  test('a setting that cannot be carried over stops the script (exit 2) unless --allow-lossy', async () => {
    const lossy = join(work, 'lossy.yaml');
    writeFileSync(
      lossy,
      'env:\n  ENABLE_PREFIX_DELEGATION: "true"\n  WARM_PREFIX_TARGET: "2"\n  CLUSTER_NAME: c\n',
    );
    await assert.rejects(
      run(process.execPath, [SCRIPT, lossy]),
      (err: { code?: number; stderr?: string }) => {
        assert.equal(err.code, 2);
        assert.match(err.stderr ?? '', /LOSSY: ENABLE_PREFIX_DELEGATION: not supported: prefix delegation/);
        return true;
      },
    );
    const ok = await run(process.execPath, [SCRIPT, lossy, '--allow-lossy']);
    assert.match(ok.stdout, /WARM_IP_TARGET: '32'/, '2 prefixes of 16 IPs');
    await assert.rejects(run(process.execPath, [SCRIPT, join(work, 'missing.yaml')]), { code: 1 });
  });

  test('every variable of the AWS README has a rule and a row in the migration guide', () => {
    assert.equal(AWS_README_VARIABLES.length, 50);
    const accepted = new Set(daemonEnvVarNames());
    assert.deepEqual(
      AWS_README_VARIABLES.filter((v) => !(v in RULES) && !accepted.has(v)),
      [],
    );
    const guide = readFileSync(join(ROOT, 'docs/migrating-from-aws-vpc-cni.md'), 'utf8');
    const rows = new Set([...guide.matchAll(/^\| `([A-Za-z0-9_]+)` \|/gm)].map((m) => m[1]));
    assert.deepEqual(
      AWS_README_VARIABLES.filter((v) => !rows.has(v)),
      [],
    );
  });
});
