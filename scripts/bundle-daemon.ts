// The daemon as the image runs it: src/ipam-daemon/main.ts bundled by esbuild into ES modules
// (dist/vpc-ipamd/vpc-ipamd.mjs, plus one chunk per lazily imported part: each cloud's provider
// and node setup stay loaded on demand; npm packages stay external, loaded from node_modules).
// Why: running the TypeScript directly loads Node's type stripper (a WebAssembly compiler, ~17 MiB
// RSS for the process's life); the bundle is plain JavaScript. The benchmarks bundle their daemon
// the same way, so they measure what runs in production.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

/** Bundles `entry` into `outdir`/`name`.mjs (+ chunks/); returns the entry file's path. */
export async function bundleDaemon(entry: string, outdir: string, name = 'vpc-ipamd'): Promise<string> {
  await build({
    entryPoints: { [name]: entry },
    bundle: true,
    splitting: true,
    platform: 'node',
    target: 'node24',
    format: 'esm',
    packages: 'external',
    outdir,
    outExtension: { '.js': '.mjs' },
    chunkNames: 'chunks/[name]-[hash]',
    sourcemap: false,
    legalComments: 'none',
    logLevel: 'warning',
  });
  // A dynamic import esbuild could not follow would still name a .ts source: fail the build.
  const chunks = existsSync(join(outdir, 'chunks')) ? readdirSync(join(outdir, 'chunks')) : [];
  for (const f of [`${name}.mjs`, ...chunks.map((c) => join('chunks', c))]) {
    const text = readFileSync(join(outdir, f), 'utf8');
    const left = /import\(\s*[^)"'`]*["'`][^"'`]*\.ts["'`]|import\(\s*[A-Za-z_$][\w$]*\s*\)/.exec(text);
    if (left) throw new Error(`${f}: a dynamic import esbuild did not bundle: ${left[0]}`);
  }
  return join(outdir, `${name}.mjs`);
}
