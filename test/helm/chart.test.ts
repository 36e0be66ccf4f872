// The Helm chart: `helm lint`, `helm template` with default and non-default values, rendered
// manifests validated against the Kubernetes schemas (kubernetes-validate, offline), and the env
// vars the chart can set compared with the catalogues the daemon and the janitor accept.
// Needs HELM_BIN (helm v4) and KUBERNETES_VALIDATE_BIN; fails with the reason when either is missing.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { loadAllYaml } from '@kubernetes/client-node';
import { daemonEnvVarNames } from '../../src/ipam-daemon/config.ts';
import { DAEMON_NODE_FLAGS } from '../../src/ipam-daemon/node-flags.ts';
import { JANITOR_ENV_VARS } from '../../src/janitor/config.ts';

const run = promisify(execFile);
const CHART = resolve(import.meta.dirname, '../../helm/vpc-ipam');
const DEFAULT_VALUES = join(CHART, 'ci/default-values.yaml');
const FULL_VALUES = join(CHART, 'ci/full-values.yaml');

type Doc = {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  // biome-ignore lint/suspicious/noExplicitAny: rendered manifests are walked structurally
  spec?: any;
  // biome-ignore lint/suspicious/noExplicitAny: idem
  data?: any;
  // biome-ignore lint/suspicious/noExplicitAny: idem
  rules?: any[];
};

function tool(envName: string, how: string): string {
  const path = process.env[envName];
  if (!path) throw new Error(`${envName} is not set: ${how}`);
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${envName}=${path} is not an executable file: ${how}`);
  }
  return path;
}

describe('helm chart', () => {
  let helm: string;
  let validator: string;
  let work: string;
  const rendered: Record<string, { text: string; docs: Doc[] }> = {};

  async function template(name: string, args: string[]): Promise<{ text: string; docs: Doc[] }> {
    const { stdout } = await run(
      helm,
      ['template', 'vpc', CHART, '--namespace', 'kube-system', '--include-crds', ...args],
      {
        maxBuffer: 16 * 1024 * 1024,
      },
    );
    // The client's own YAML loader, then back to plain JSON shapes for structural comparison.
    const docs = (loadAllYaml(stdout) as (Doc | null)[])
      .filter((d): d is Doc => d !== null)
      .map((d) => JSON.parse(JSON.stringify(d)) as Doc);
    rendered[name] = { text: stdout, docs };
    return rendered[name]!;
  }

  function find(docs: Doc[], kind: string, nameSuffix = ''): Doc {
    const d = docs.find((x) => x.kind === kind && x.metadata.name.endsWith(nameSuffix));
    assert.ok(d, `no ${kind} *${nameSuffix} in the rendered chart`);
    return d;
  }

  before(async () => {
    helm = tool(
      'HELM_BIN',
      'install helm v4 (GOBIN=... go install helm.sh/helm/v4/cmd/helm@v4.2.4) and point HELM_BIN at it',
    );
    validator = tool(
      'KUBERNETES_VALIDATE_BIN',
      'python3 -m venv /tmp/kv && /tmp/kv/bin/pip install kubernetes-validate, then KUBERNETES_VALIDATE_BIN=/tmp/kv/bin/kubernetes-validate',
    );
    const { stdout } = await run(helm, ['version', '--short']);
    assert.match(stdout, /^v4\./, `HELM_BIN must be helm v4, got ${stdout}`);
    work = mkdtempSync(join(tmpdir(), 'vpc-ipam-helm-'));
    await template('default', ['-f', DEFAULT_VALUES]);
    await template('full', ['-f', FULL_VALUES]);
  });
  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('helm lint --strict passes with default and non-default values', async () => {
    for (const values of [DEFAULT_VALUES, FULL_VALUES]) {
      const { stdout } = await run(helm, ['lint', '--strict', CHART, '-f', values]);
      assert.match(stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
    }
  });

  test('rendered manifests are valid against the Kubernetes schemas (strict)', async () => {
    for (const [name, { text }] of Object.entries(rendered)) {
      const file = join(work, `${name}.yaml`);
      writeFileSync(file, text);
      const out = await run(validator, ['--strict', file]).catch(
        (err: { stdout?: string; stderr?: string }) => {
          assert.fail(`kubernetes-validate rejected the ${name} render:\n${err.stdout}${err.stderr}`);
        },
      );
      const passed = out.stdout.split('\n').filter((l) => l.startsWith('INFO') && l.includes(' passed '));
      // Every built-in kind was checked (the custom kinds have no published schema).
      const builtIn = rendered[name]!.docs.filter(
        (d) => !/vpc-ipam\.io|monitoring\.coreos\.com/.test(d.apiVersion),
      );
      assert.equal(passed.length, builtIn.length, out.stdout);
    }
  });

  test('default render: the objects the issue asks for', () => {
    const { docs } = rendered.default!;
    const kinds = docs.map((d) => d.kind).sort();
    for (const k of [
      'CustomResourceDefinition',
      'DaemonSet',
      'Deployment',
      'ServiceAccount',
      'ClusterRole',
      'Role',
      'ConfigMap',
    ]) {
      assert.ok(kinds.includes(k), `missing ${k}`);
    }
    assert.ok(!kinds.includes('ServiceMonitor'), 'ServiceMonitor is opt-in');
    const crds = docs
      .filter((d) => d.kind === 'CustomResourceDefinition')
      .map((d) => d.metadata.name)
      .sort();
    assert.deepEqual(crds, ['nodeipamstatuses.vpc-ipam.io', 'podnetworkconfigs.vpc-ipam.io']);
  });

  test('DaemonSet: host network, plugin-installing init container, only the privileges it needs', () => {
    const ds = find(rendered.default!.docs, 'DaemonSet');
    const pod = ds.spec.template.spec;
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.priorityClassName, 'system-node-critical');
    assert.equal(ds.spec.updateStrategy.type, 'RollingUpdate');
    assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
    const init = pod.initContainers[0];
    assert.deepEqual(init.command, ['node', '/app/src/ipam-daemon/k8s/install-cni.ts']);
    const hostPaths = Object.fromEntries(
      pod.volumes
        .filter((v: { hostPath?: unknown }) => v.hostPath)
        .map((v: { name: string; hostPath: { path: string } }) => [v.name, v.hostPath.path]),
    );
    const initMounts = init.volumeMounts
      .map((m: { name: string }) => hostPaths[m.name])
      .filter(Boolean)
      .sort();
    assert.deepEqual(initMounts, ['/etc/cni/net.d', '/opt/cni/bin', '/proc/sys/net']);
    // Two sysctls need no privileged container: NET_ADMIN and the host's /proc/sys/net.
    assert.equal(init.securityContext.privileged, false);
    assert.equal(init.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(init.securityContext.capabilities, { drop: ['ALL'], add: ['NET_ADMIN'] });
    assert.deepEqual(init.securityContext.seccompProfile, { type: 'RuntimeDefault' });
    assert.ok(
      init.env.some(
        (e: { name: string; value: string }) => e.name === 'CNI_SYSCTL_ROOT' && e.value === '/host/proc/sys',
      ),
    );
    const main = pod.containers[0];
    assert.deepEqual(main.securityContext.seccompProfile, { type: 'RuntimeDefault' });
    const mainHostPaths = main.volumeMounts.map((m: { name: string }) => hostPaths[m.name]).filter(Boolean);
    assert.ok(!mainHostPaths.includes('/proc/sys/net'), 'the daemon never writes sysctls');
    assert.equal(main.securityContext.privileged, false);
    assert.equal(main.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(main.securityContext.capabilities, {
      drop: ['ALL'],
      add: ['NET_ADMIN', 'NET_RAW', 'SYS_ADMIN'],
    });
    // The shim hands ADD/DEL to the daemon: it sees pod netns pinned after it started.
    const netns = main.volumeMounts.find((m: { name: string }) => m.name === 'netns');
    assert.deepEqual(
      { path: hostPaths.netns, mountPath: netns?.mountPath, propagation: netns?.mountPropagation },
      { path: '/var/run/netns', mountPath: '/var/run/netns', propagation: 'HostToContainer' },
    );
    assert.equal(pod.hostPID, false);
    // Both executables are installed: the shim and the Node plugin it falls back to.
    const initEnv = Object.fromEntries(
      init.env.map((e: { name: string; value: string }) => [e.name, e.value]),
    );
    assert.equal(initEnv.CNI_PLUGIN_SOURCE, '/opt/vpc-ipam/bin/vpc-cni');
    assert.equal(initEnv.CNI_FALLBACK_SOURCE, '/opt/vpc-ipam/bin/vpc-cni-node');
    assert.ok(main.resources.requests.cpu && main.resources.limits.memory);
    const mounted = main.volumeMounts.map((m: { mountPath: string }) => m.mountPath);
    assert.ok(mounted.includes('/run/vpc-ipam'), 'socket directory shared with the host');
    assert.ok(mounted.includes('/var/lib/vpc-ipam'), 'checkpoint survives restarts');
    const conflist = JSON.parse(find(rendered.default!.docs, 'ConfigMap', '-cni').data['conflist.json']);
    // 1.0.0 for containerd 1.6's libcni (it rejects 1.1.0 results); newer runtimes pick 1.1.0
    assert.equal(conflist.cniVersion, '1.0.0');
    assert.deepEqual(conflist.cniVersions, ['1.0.0', '1.1.0']);
    assert.equal(conflist.plugins[0].type, 'vpc-cni');
    assert.equal(conflist.plugins[0].socketPath, '/run/vpc-ipam/ipamd.sock');
  });

  test('DaemonSet: exec probes run the health CLI the image ships, on the daemon socket', async () => {
    const main = find(rendered.default!.docs, 'DaemonSet').spec.template.spec.containers[0];
    const health = ['node', '/app/src/ipam-daemon/cli.ts', 'health'];
    assert.deepEqual(main.startupProbe.exec.command, health);
    assert.deepEqual(main.livenessProbe.exec.command, health);
    assert.deepEqual(main.readinessProbe.exec.command, [...health, '--ready']);
    // The startup probe covers node discovery + pool rebuild (minutes, not the default 30 s).
    const s = main.startupProbe;
    assert.ok(s.periodSeconds * s.failureThreshold >= 120, JSON.stringify(s));
    for (const p of [main.startupProbe, main.livenessProbe, main.readinessProbe]) {
      // The CLI gives up after 2 s; kubelet must not kill it first.
      assert.ok(p.timeoutSeconds > 2, JSON.stringify(p));
    }
    // The CLI finds the socket through the same env var as the daemon.
    assert.ok(
      main.env.some(
        (e: { name: string; value: string }) =>
          e.name === 'VPC_IPAM_SOCKET' && e.value === '/run/vpc-ipam/ipamd.sock',
      ),
    );
    // The command exists in the image: /app is the repo's src/ copied by the Dockerfile.
    const dockerfile = readFileSync(join(CHART, '../../Dockerfile'), 'utf8');
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    assert.match(runtime, /\nWORKDIR \/app\n/);
    assert.match(runtime, /\nCOPY src \.\/src\n/);
    // The daemon runs bundled, with its V8 flags: the same in the chart and the image's CMD.
    assert.deepEqual(main.command, ['node', ...DAEMON_NODE_FLAGS, '/app/dist/vpc-ipamd/vpc-ipamd.mjs']);
    assert.match(runtime, /\nCOPY --from=build \/src\/dist\/vpc-ipamd \.\/dist\/vpc-ipamd\n/);
    assert.ok(
      runtime.includes(
        `CMD ${JSON.stringify(['node', ...DAEMON_NODE_FLAGS, '/app/dist/vpc-ipamd/vpc-ipamd.mjs'])}`.replaceAll(
          ',',
          ', ',
        ),
      ),
      'Dockerfile CMD',
    );
    accessSync(resolve(CHART, '../../src/ipam-daemon/cli.ts'), constants.R_OK);
    assert.equal(main.command[0], 'node', 'probes use the same node binary as the daemon');
    // Values are honoured and a probe can be dropped.
    const full = find(rendered.full!.docs, 'DaemonSet').spec.template.spec.containers[0];
    assert.equal(full.livenessProbe.periodSeconds, 30);
    assert.equal(full.livenessProbe.failureThreshold, 3, 'unset fields keep their defaults');
    const { docs } = await template('no-readiness', [
      '-f',
      DEFAULT_VALUES,
      '--set',
      'daemon.probes.readiness=null',
    ]);
    const dropped = find(docs, 'DaemonSet').spec.template.spec.containers[0];
    assert.equal(dropped.readinessProbe, undefined);
    assert.deepEqual(dropped.livenessProbe.exec.command, health);
  });

  test('RBAC is least-privilege: no writes to nodes or pods; the janitor only holds its Lease', () => {
    const { docs } = rendered.default!;
    const daemonRules = find(docs, 'ClusterRole', '-daemon').rules!;
    for (const r of daemonRules) {
      if (r.resources.includes('nodes') || r.resources.includes('pods')) {
        assert.deepEqual(
          r.verbs.filter((v: string) => !['get', 'list', 'watch'].includes(v)),
          [],
          `daemon may only read ${r.resources}`,
        );
      }
      assert.ok(!r.verbs.includes('*') && !r.resources.includes('*'));
      assert.ok(!r.resources.includes('secrets'));
    }
    const janitorCluster = find(docs, 'ClusterRole', '-janitor').rules!;
    assert.deepEqual(janitorCluster, [{ apiGroups: [''], resources: ['nodes'], verbs: ['list'] }]);
    const role = find(docs, 'Role', '-janitor');
    const leaseRules = role.rules!.filter((r) => r.resources.includes('leases'));
    assert.ok(
      leaseRules.every((r) => r.verbs.includes('create') || r.resourceNames?.[0] === 'vpc-ipam-janitor'),
    );
    const janitor = find(docs, 'Deployment', '-janitor').spec.template.spec;
    assert.equal(janitor.securityContext.runAsNonRoot, true);
    assert.equal(janitor.hostNetwork, undefined);
  });

  test('non-default values are honoured', () => {
    const { docs } = rendered.full!;
    const ds = find(docs, 'DaemonSet');
    const pod = ds.spec.template.spec;
    assert.equal(ds.spec.updateStrategy.type, 'OnDelete');
    assert.equal(pod.containers[0].image, 'registry.example.com/vpc-ipam:1.2.3');
    assert.equal(ds.spec.template.metadata.labels['azure.workload.identity/use'], 'true');
    assert.equal(pod.initContainers[0].securityContext.privileged, false);
    assert.deepEqual(
      pod.initContainers[0].securityContext.capabilities,
      { drop: ['ALL'] },
      'no sysctls: no capability',
    );
    assert.ok(!pod.volumes.some((v: { name: string }) => v.name === 'host-sysctl-net'));
    const sa = find(docs, 'ServiceAccount', '-daemon');
    assert.equal(
      sa.metadata.annotations?.['azure.workload.identity/client-id'],
      '00000000-0000-0000-0000-000000000001',
    );
    assert.equal(find(docs, 'Deployment', '-janitor').spec.replicas, 3);
    const conflist = JSON.parse(find(docs, 'ConfigMap', '-cni').data['conflist.json']);
    assert.equal(conflist.plugins[0].mtu, 1500);
    assert.equal(conflist.plugins[0].mode, 'ipvlan');
    assert.deepEqual(
      [
        conflist.plugins[0].timeoutMs,
        conflist.plugins[0].connectTimeoutMs,
        conflist.plugins[0].answerMarginMs,
      ],
      [60000, 10000, 60000],
      "the shim's waits",
    );
    assert.equal(conflist.plugins[1].type, 'portmap');
    // ENABLE_BANDWIDTH_PLUGIN / DISABLE_POD_V6 counterparts, chained after portmap.
    assert.deepEqual(conflist.plugins[2], { type: 'bandwidth', capabilities: { bandwidth: true } });
    assert.equal(conflist.plugins[3].type, 'tuning');
    assert.equal(conflist.plugins[3].sysctl['net.ipv6.conf.all.disable_ipv6'], '1');
    const plain = JSON.parse(find(rendered.default!.docs, 'ConfigMap', '-cni').data['conflist.json']);
    assert.deepEqual(
      plain.plugins.map((p: { type: string }) => p.type),
      ['vpc-cni'],
      'nothing chained by default',
    );
    assert.equal(plain.plugins[0].connectTimeoutMs, undefined, "the plugin's defaults unless set");
    const sm = find(docs, 'ServiceMonitor');
    assert.equal(sm.metadata.labels?.release, 'prometheus');
    assert.equal(sm.spec.endpoints[0].interval, '15s');
    assert.equal(find(docs, 'Service', '-metrics').spec.ports[0].port, 9100);
    const pncs = docs.filter((d) => d.kind === 'PodNetworkConfig').map((d) => d.metadata.name);
    assert.deepEqual(pncs, ['westus2-1', 'pods-b']);
    const role = find(docs, 'Role', '-janitor');
    assert.ok(role.rules!.some((r) => r.resourceNames?.[0] === 'custom-janitor'));
  });

  test('node readiness: the init container leaves the conflist to the daemon, which gets the ConfigMap and the host CNI config directory', () => {
    const spec = find(rendered.default!.docs, 'DaemonSet').spec.template.spec;
    const init = spec.initContainers[0];
    const initEnv = Object.fromEntries(
      init.env.map((e: { name: string; value: string }) => [e.name, e.value]),
    );
    assert.equal(initEnv.CNI_WRITE_CONFLIST, 'false');
    const main = spec.containers[0];
    const env = Object.fromEntries(main.env.map((e: { name: string; value: string }) => [e.name, e.value]));
    assert.equal(env.VPC_IPAM_CNI_CONFLIST, '/etc/vpc-ipam/cni/conflist.json');
    assert.equal(env.VPC_IPAM_CNI_CONFLIST_TARGET, '/host/cni/net.d/10-vpc-ipam.conflist');
    const mounts = Object.fromEntries(
      main.volumeMounts.map((m: { name: string; mountPath: string }) => [m.name, m.mountPath]),
    );
    assert.equal(mounts['cni-net'], '/host/cni/net.d');
    assert.equal(mounts['cni-conflist'], '/etc/vpc-ipam/cni');
  });

  test('the daemon env vars the chart can set are exactly those the daemon accepts', () => {
    const container = find(rendered.full!.docs, 'DaemonSet').spec.template.spec.containers[0];
    const rendered_ = container.env.map((e: { name: string }) => e.name).sort();
    assert.equal(new Set(rendered_).size, rendered_.length, 'no variable set twice');
    assert.deepEqual(rendered_, [...daemonEnvVarNames()].sort());
    // values.yaml lists each one (the rest come from top-level values and the downward API).
    const values = loadAllYaml(readFileSync(join(CHART, 'values.yaml'), 'utf8'))[0] as {
      daemon: { env: Record<string, unknown> };
      janitor: { env: Record<string, unknown> };
    };
    const fromValues = [
      ...Object.keys(values.daemon.env),
      'NODE_NAME',
      'CLOUD_PROVIDER',
      'CLUSTER_NAME',
      // the conflist the daemon writes once ready: the chart's ConfigMap, to cni.confDir/cni.conflistName
      'VPC_IPAM_CNI_CONFLIST',
      'VPC_IPAM_CNI_CONFLIST_TARGET',
    ].sort();
    assert.deepEqual(fromValues, [...daemonEnvVarNames()].sort());
  });

  test('the janitor env vars the chart can set are exactly those the janitor accepts', () => {
    const container = find(rendered.full!.docs, 'Deployment', '-janitor').spec.template.spec.containers[0];
    // full-values.yaml blanks the two optional AWS ones (Azure); the default render has them.
    const full = container.env.map((e: { name: string }) => e.name);
    const dflt = find(
      rendered.default!.docs,
      'Deployment',
      '-janitor',
    ).spec.template.spec.containers[0].env.map((e: { name: string }) => e.name);
    const union = [...new Set([...full, ...dflt])].sort();
    const expected = JANITOR_ENV_VARS.map((s) => s.name).filter((n) => n !== 'VPC_IPAM_EC2_ENDPOINT');
    // VPC_IPAM_EC2_ENDPOINT is settable (values.yaml) but empty in both renders: check it renders when set.
    assert.deepEqual(union, expected.sort());
    const values = readFileSync(join(CHART, 'values.yaml'), 'utf8');
    assert.match(values, /\n {4}VPC_IPAM_EC2_ENDPOINT: ""/);
  });

  test('every variable in values.yaml carries a comment', () => {
    const lines = readFileSync(join(CHART, 'values.yaml'), 'utf8').split('\n');
    const undocumented: string[] = [];
    lines.forEach((line, i) => {
      const m = /^ {4}([A-Z][A-Z0-9_]+):/.exec(line);
      if (m && !/^\s*#/.test(lines[i - 1] ?? '')) undocumented.push(m[1]!);
    });
    assert.deepEqual(undocumented, []);
  });

  test('bad values fail the render with a clear message', async () => {
    const cases: [string[], RegExp][] = [
      [['--set', 'janitor.env.AWS_REGION=us-east-1'], /clusterName is required/],
      [['-f', DEFAULT_VALUES, '--set', 'cloud=gcp'], /cloud="gcp" is invalid; accepted: aws \| azure/],
      [['-f', DEFAULT_VALUES, '--set', 'serviceMonitor.enabled=true'], /METRICS_ADDRESS/],
      [['-f', DEFAULT_VALUES, '--set', 'janitor.env.AWS_REGION='], /janitor.env.AWS_REGION is required/],
    ];
    for (const [args, message] of cases) {
      await assert.rejects(run(helm, ['template', 'vpc', CHART, ...args]), (err: { stderr?: string }) => {
        assert.match(err.stderr ?? '', message);
        return true;
      });
    }
  });

  test('AWS VPC CNI knobs reach the conflist: veth prefix, pod MTU from AWS_VPC_ENI_MTU unless cni.mtu', async () => {
    const plugin = (docs: Doc[]) =>
      JSON.parse(find(docs, 'ConfigMap', '-cni').data['conflist.json']).plugins[0] as {
        mtu: number;
        vethPrefix: string;
      };
    assert.deepEqual(
      [plugin(rendered.default!.docs).mtu, plugin(rendered.default!.docs).vethPrefix],
      [9001, 'vpc'],
    );
    // full-values: cni.mtu 1500 (POD_MTU) wins; the prefix follows daemon.env.
    assert.equal(plugin(rendered.full!.docs).vethPrefix, 'eni');
    const { docs } = await template('eni-mtu', [
      '-f',
      DEFAULT_VALUES,
      '--set',
      'daemon.env.AWS_VPC_ENI_MTU=1500',
    ]);
    assert.equal(plugin(docs).mtu, 1500, 'the pods follow AWS_VPC_ENI_MTU when cni.mtu is empty');
  });

  test('the shim waits: 0 is written as 0 (answerMarginMs: 0 means no margin), empty leaves the default', async () => {
    const { docs } = await template('zero-margin', [
      '-f',
      DEFAULT_VALUES,
      '--set',
      'cni.answerMarginMs=0',
      '--set',
      'cni.timeoutMs=5000',
    ]);
    const plugin = JSON.parse(find(docs, 'ConfigMap', '-cni').data['conflist.json']).plugins[0];
    assert.equal(plugin.answerMarginMs, 0);
    assert.equal(plugin.timeoutMs, 5000);
    assert.equal(plugin.connectTimeoutMs, undefined);
  });

  test('ANNOTATE_POD_IP: pods/patch is granted only when the knob is on', async () => {
    const podVerbs = (docs: Doc[]) =>
      find(docs, 'ClusterRole', '-daemon')
        .rules!.filter((r) => r.resources.includes('pods'))
        .flatMap((r) => r.verbs as string[])
        .sort();
    assert.deepEqual(podVerbs(rendered.default!.docs), ['list', 'watch']);
    assert.deepEqual(podVerbs(rendered.full!.docs), ['list', 'patch', 'watch'], 'full-values turns it on');
    const { docs } = await template('annotate-off', [
      '-f',
      FULL_VALUES,
      '--set',
      'daemon.env.ANNOTATE_POD_IP=false',
    ]);
    assert.deepEqual(podVerbs(docs), ['list', 'watch']);
  });

  test('AWS_VPC_K8S_CNI_LOG_FILE: a file is written to its directory on the node; stdout needs no mount', async () => {
    const logMount = (docs: Doc[]) => {
      const pod = find(docs, 'DaemonSet').spec.template.spec;
      const m = pod.containers[0].volumeMounts.find((v: { name: string }) => v.name === 'ipamd-log');
      const v = pod.volumes.find((x: { name: string }) => x.name === 'ipamd-log');
      return m ? [m.mountPath, v.hostPath.path] : null;
    };
    assert.equal(logMount(rendered.default!.docs), null);
    assert.deepEqual(logMount(rendered.full!.docs), ['/var/log/vpc-ipam-daemon', '/var/log/vpc-ipam-daemon']);
    // In the CNI log's directory: that mount already serves it.
    const { docs } = await template('log-in-cni-dir', [
      '-f',
      DEFAULT_VALUES,
      '--set',
      'daemon.env.AWS_VPC_K8S_CNI_LOG_FILE=/var/log/vpc-ipam/ipamd.log',
    ]);
    assert.equal(logMount(docs), null);
  });

  test('an endpoint override renders into the janitor', async () => {
    const { docs } = await template('endpoint', [
      '-f',
      DEFAULT_VALUES,
      '--set',
      'janitor.env.VPC_IPAM_EC2_ENDPOINT=http://127.0.0.1:4566',
    ]);
    const env = find(docs, 'Deployment', '-janitor').spec.template.spec.containers[0].env;
    assert.ok(
      env.some(
        (e: { name: string; value: string }) =>
          e.name === 'VPC_IPAM_EC2_ENDPOINT' && e.value === 'http://127.0.0.1:4566',
      ),
    );
  });
});
