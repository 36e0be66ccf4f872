// `npm run build`: bundles the CNI plugin (src/cni/main.ts) into one CommonJS file with esbuild and
// turns it into a Node single-executable application (dist/vpc-cni) that runs on hosts without
// Node.js. Steps: bundle -> SEA blob (node --experimental-sea-config) -> copy of the node binary ->
// postject the blob (NODE_SEA_FUSE sentinel) -> smoke test (VERSION with an empty PATH).
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
// Per-process work dir and an atomic rename at the end: a build never disturbs a running test or
// a concurrent build (running executions keep the old file; new ones get the complete new one).
const work = join(dist, `.sea-${process.pid}`);
const bundle = join(work, 'vpc-cni.cjs');
const blob = join(work, 'vpc-cni.blob');
const output = join(dist, 'vpc-cni');
const staged = join(work, 'vpc-cni');
// The fuse string Node's SEA loader looks for; postject flips it when the blob is injected.
const FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

const t0 = performance.now();
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });

function run(file: string, args: string[]): void {
  try {
    execFileSync(file, args, { stdio: 'pipe' });
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
  // Smoke test: must answer VERSION with no node on PATH.
  const answer = execFileSync(staged, [], {
    env: { CNI_COMMAND: 'VERSION', PATH: '' },
    input: '{"cniVersion":"1.0.0"}',
  }).toString();
  const parsed = JSON.parse(answer) as { supportedVersions?: string[] };
  if (!parsed.supportedVersions?.includes('1.1.0')) throw new Error(`smoke test failed: ${answer}`);
  renameSync(staged, output);
} finally {
  rmSync(work, { recursive: true, force: true });
}
const mb = (statSync(output).size / 1e6).toFixed(1);
console.log(`built ${output} (${mb} MB) in ${Math.round(performance.now() - t0)} ms; VERSION smoke test ok`);
