// The daemon as the image runs it: src/ipam-daemon/main.ts bundled by esbuild into one ES module
// (dist/vpc-ipamd.mjs; npm packages stay external, loaded from node_modules). Why: running the
// TypeScript directly loads Node's type stripper (a WebAssembly compiler, ~17 MiB RSS for the
// process's life); the bundle is plain JavaScript. The benchmark bundles its daemon process the
// same way (bench/ipamd-socket.ts), so it measures what runs in production.
import { build } from 'esbuild';

export async function bundleDaemon(entry: string, outfile: string): Promise<void> {
  await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    target: 'node24',
    format: 'esm',
    packages: 'external',
    outfile,
    sourcemap: false,
    legalComments: 'none',
    logLevel: 'warning',
  });
}
