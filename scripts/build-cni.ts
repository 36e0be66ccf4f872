// `npm run build`: the two CNI executables.
// - dist/vpc-cni: the static shim the runtime calls (src/cni/shim, Go, CGO_ENABLED=0): forwards the
//   CNI env + stdin to vpc-ipamd, which runs the command; applies the wiring plan it hands back
//   with netlink (github.com/vishvananda/netlink, fetched by scripts/setup.sh).
// - dist/vpc-cni-node: the plugin itself (src/cni/main.ts) as a Node single-executable application
//   (runs on hosts without Node.js); the shim runs it when the daemon cannot be reached. Steps:
//   esbuild bundle -> SEA blob (node --experimental-sea-config) -> copy of the node binary ->
//   postject the blob (NODE_SEA_FUSE sentinel).
// Smoke test: VERSION through the shim with an empty PATH and no daemon, i.e. via the fallback.
// Also bundles the daemon (dist/vpc-ipamd/vpc-ipamd.mjs + chunks, see bundle-daemon.ts; smoke test:
// it loads and rejects a bad environment with exit code 2).
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { bundleDaemon } from './bundle-daemon.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
// Per-process work dir and an atomic rename at the end: a build never disturbs a running test or
// a concurrent build (running executions keep the old file; new ones get the complete new one).
const work = join(dist, `.sea-${process.pid}`);
const bundle = join(work, 'vpc-cni.cjs');
const blob = join(work, 'vpc-cni.blob');
const output = join(dist, 'vpc-cni-node');
const staged = join(work, 'vpc-cni-node');
const shimOutput = join(dist, 'vpc-cni');
const daemonOutput = join(dist, 'vpc-ipamd');
const daemonStaged = join(work, 'vpc-ipamd');
const shimStaged = join(work, 'vpc-cni');
// The fuse string Node's SEA loader looks for; postject flips it when the blob is injected.
const FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

const t0 = performance.now();
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });

function run(file: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): void {
  try {
    execFileSync(file, args, { stdio: 'pipe', ...opts });
  } catch (e) {
    const err = e as { stdout?: Buffer; stderr?: Buffer; message: string };
    throw new Error(`${err.message}\n${err.stdout?.toString() ?? ''}${err.stderr?.toString() ?? ''}`);
  }
}

try {
  await build({
    entryPoints: [join(root, 'src/cni/main.ts')],
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'cjs',
    outfile: bundle,
    minify: true,
    sourcemap: false,
    legalComments: 'none',
    logLevel: 'warning',
  });
  const seaConfig = join(work, 'sea-config.json');
  writeFileSync(
    seaConfig,
    JSON.stringify({ main: bundle, output: blob, disableExperimentalSEAWarning: true, useCodeCache: true }),
  );
  // The running node (Node 24 from the node@24 devDependency) is the one embedded in the executable.
  run(process.execPath, ['--experimental-sea-config', seaConfig]);
  copyFileSync(process.execPath, staged);
  chmodSync(staged, 0o755);
  // postject's ELF library prints harmless "Can't find string offset" warnings: output only on failure.
  run(process.execPath, [
    join(root, 'node_modules/postject/dist/cli.js'),
    staged,
    'NODE_SEA_BLOB',
    blob,
    '--sentinel-fuse',
    FUSE,
  ]);
  // Static, stripped, reproducible; GOTOOLCHAIN=local: never download a toolchain.
  run('go', ['build', '-trimpath', '-buildvcs=false', '-ldflags', '-s -w', '-o', shimStaged, '.'], {
    cwd: join(root, 'src/cni/shim'),
    env: { ...process.env, CGO_ENABLED: '0', GOTOOLCHAIN: 'local', GOFLAGS: '' },
  });
  // Smoke test: VERSION through the shim, no daemon at the socket, no node on PATH: the fallback answers.
  const answer = execFileSync(shimStaged, [], {
    env: { CNI_COMMAND: 'VERSION', PATH: '' },
    input: JSON.stringify({ cniVersion: '1.0.0', socketPath: join(work, 'no-daemon.sock') }),
  }).toString();
  const parsed = JSON.parse(answer) as { supportedVersions?: string[] };
  if (!parsed.supportedVersions?.includes('1.1.0')) throw new Error(`smoke test failed: ${answer}`);
  const daemonEntry = await bundleDaemon(join(root, 'src/ipam-daemon/main.ts'), daemonStaged);
  const bad = spawnSync(process.execPath, [daemonEntry], { env: { CLOUD_PROVIDER: 'bogus', PATH: '' } });
  if (bad.status !== 2 || !/CLOUD_PROVIDER/.test(String(bad.stderr) + String(bad.stdout))) {
    throw new Error(`daemon bundle smoke test: exit ${bad.status}: ${bad.stderr}${bad.stdout}`);
  }
  // Resolves node_modules from dist/ as the sources do.
  rmSync(daemonOutput, { recursive: true, force: true });
  renameSync(daemonStaged, daemonOutput);
  // The fallback first: a shim is never installed without the plugin it falls back to.
  renameSync(staged, output);
  renameSync(shimStaged, shimOutput);
} finally {
  rmSync(work, { recursive: true, force: true });
}
const mb = (p: string) => (statSync(p).size / 1e6).toFixed(1);
console.log(
  `built ${shimOutput} (${mb(shimOutput)} MB), ${output} (${mb(output)} MB) and ${daemonOutput} in ${Math.round(performance.now() - t0)} ms; VERSION smoke test ok`,
);
