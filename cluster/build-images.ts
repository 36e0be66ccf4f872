// Builds the cluster test bed's three images as OCI archives, without Docker or a registry:
//
//   pause    the sandbox image: cluster/images/pause.c built with gcc -static
//   busybox  the scenarios' workload: Debian's busybox-static, its applets, and a CGI that
//            answers with the caller's address (busybox httpd)
//   vpc-ipam the product, as the Dockerfile lays it out: a Debian bookworm base (mmdebstrap
//            --variant=extract: libc, libstdc++, iproute2, iptables, util-linux), Node 24 from the
//            `node` npm package, /app with src/ and production node_modules, the CNI shim and its
//            Node fallback in /opt/vpc-ipam/bin (vpc-cni, vpc-cni-node)
//
// The Debian base and production node_modules are cached in the tools dir (by package list and by
// package-lock hash); the product layer is rebuilt every run and tagged with its content hash.
// Writes .run/cluster/images/images.json: { name: { ref, archive } }.
//
//   node cluster/build-images.ts
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { sha256File, tarDirectory, writeOciArchive } from './oci.ts';
import { toolsDir } from './proc.ts';

const pexec = promisify(execFile);
const root = resolve(import.meta.dirname, '..');
const out = join(root, '.run', 'cluster', 'images');
const cache = join(toolsDir(), 'images');

export interface BuiltImage {
  ref: string;
  archive: string;
}

export type ImageSet = Record<'pause' | 'busybox' | 'product', BuiltImage>;

export const IMAGES_JSON = join(out, 'images.json');

const say = (m: string) => process.stderr.write(`[build-images] ${m}\n`);

async function sh(file: string, args: string[], opts: { cwd?: string } = {}): Promise<string> {
  try {
    return (await pexec(file, args, { maxBuffer: 64 << 20, ...opts })).stdout;
  } catch (e) {
    const err = e as Error & { stderr?: string };
    throw new Error(`${file} ${args.join(' ')} failed: ${err.stderr?.trim() || err.message}`);
  }
}

/** Debian bookworm root filesystem (extract only: no maintainer scripts run), cached. */
// util-linux: nsenter, with which the daemon wires pods inside their netns for the CNI shim.
const BASE_PACKAGES = ['libc6', 'libstdc++6', 'libgcc-s1', 'iproute2', 'iptables', 'util-linux'];
async function debianBase(): Promise<string> {
  const key = createHash('sha256')
    .update(`bookworm ${BASE_PACKAGES.join(',')}`)
    .digest('hex')
    .slice(0, 12);
  const tar = join(cache, `debian-base-${key}.tar`);
  if (existsSync(tar)) return tar;
  say(`mmdebstrap: Debian bookworm with ${BASE_PACKAGES.join(', ')} (a minute or two)`);
  mkdirSync(cache, { recursive: true });
  const tmp = `${tar}.tmp-${process.pid}.tar`;
  await sh('mmdebstrap', [
    '--variant=extract',
    `--include=${BASE_PACKAGES.join(',')}`,
    '--dpkgopt=path-exclude=/usr/share/{doc,man,locale,info}/*',
    '--aptopt=Acquire::Languages "none"',
    'bookworm',
    tmp,
    'http://deb.debian.org/debian',
  ]);
  renameSync(tmp, tar);
  return tar;
}

/** Production dependencies of this package-lock, cached by its hash. */
async function productionModules(): Promise<string> {
  const lock = readFileSync(join(root, 'package-lock.json'));
  const key = createHash('sha256')
    .update(lock)
    .update(readFileSync(join(root, 'package.json')))
    .digest('hex')
    .slice(0, 12);
  const dir = join(cache, `prod-modules-${key}`);
  if (existsSync(join(dir, 'node_modules'))) return join(dir, 'node_modules');
  // npm install, not npm ci: the registry mirror lacks biome's off-platform optional packages,
  // which npm ci insists on (see scripts/setup.sh); the lock still pins every version.
  say('npm install --omit=dev for the image');
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  copyFileSync(join(root, 'package.json'), join(tmp, 'package.json'));
  copyFileSync(join(root, 'package-lock.json'), join(tmp, 'package-lock.json'));
  await sh(
    'npm',
    ['install', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'],
    { cwd: tmp },
  );
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return join(dir, 'node_modules');
}

async function layerOf(name: string, fill: (dir: string) => Promise<void> | void): Promise<string> {
  const dir = join(out, `${name}-root`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  await fill(dir);
  const tar = join(out, `${name}-layer.tar`);
  await tarDirectory(dir, tar);
  rmSync(dir, { recursive: true, force: true });
  return tar;
}

async function tagOf(layers: string[], extra: string): Promise<string> {
  const h = createHash('sha256').update(extra);
  for (const l of layers) h.update(await sha256File(l));
  return h.digest('hex').slice(0, 12);
}

async function pauseImage(): Promise<BuiltImage> {
  const src = join(import.meta.dirname, 'images', 'pause.c');
  const key = createHash('sha256').update(readFileSync(src)).digest('hex').slice(0, 12);
  const archive = join(cache, `pause-${key}.oci.tar`);
  const ref = `registry.local/pause:${key}`;
  if (!existsSync(archive)) {
    mkdirSync(cache, { recursive: true });
    const layer = await layerOf('pause', async (dir) => {
      await sh('gcc', ['-static', '-O2', '-s', '-o', join(dir, 'pause'), src]);
    });
    await writeOciArchive(archive, ref, [layer], { entrypoint: ['/pause'], user: '65535:65535' });
    rmSync(layer);
  }
  return { ref, archive };
}

async function busyboxImage(): Promise<BuiltImage> {
  const cgi = join(import.meta.dirname, 'images', 'whoami.cgi');
  const busybox = '/bin/busybox';
  if (!existsSync(busybox))
    throw new Error('/bin/busybox is missing: apt-get install busybox-static (cluster/build-k8s.sh does)');
  const version = (await sh(busybox, ['--help']).catch(() => '')).split('\n')[0] ?? '';
  const key = createHash('sha256').update(version).update(readFileSync(cgi)).digest('hex').slice(0, 12);
  const archive = join(cache, `busybox-${key}.oci.tar`);
  const ref = `registry.local/busybox:${key}`;
  if (!existsSync(archive)) {
    mkdirSync(cache, { recursive: true });
    const layer = await layerOf('busybox', async (dir) => {
      for (const d of ['bin', 'tmp', 'www/cgi-bin', 'etc']) mkdirSync(join(dir, d), { recursive: true });
      copyFileSync(busybox, join(dir, 'bin', 'busybox'));
      chmodSync(join(dir, 'tmp'), 0o1777);
      const applets = (await sh(busybox, ['--list'])).split('\n').filter((a) => /^[a-z0-9_.[-]+$/.test(a));
      for (const a of applets) if (a !== 'busybox') symlinkSync('busybox', join(dir, 'bin', a));
      copyFileSync(cgi, join(dir, 'www', 'cgi-bin', 'whoami'));
      chmodSync(join(dir, 'www', 'cgi-bin', 'whoami'), 0o755);
      writeFileSync(join(dir, 'www', 'index.html'), 'vpc-ipam test bed\n');
      writeFileSync(
        join(dir, 'etc', 'passwd'),
        'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n',
      );
    });
    await writeOciArchive(archive, ref, [layer], { env: ['PATH=/bin'], cmd: ['sh'] });
    rmSync(layer);
  }
  return { ref, archive };
}

async function productImage(): Promise<BuiltImage> {
  const cni = ['vpc-cni', 'vpc-cni-node'].map((n) => join(root, 'dist', n));
  for (const f of [...cni, join(root, 'dist', 'vpc-ipamd', 'vpc-ipamd.mjs')])
    if (!existsSync(f)) throw new Error(`${f} is missing: npm run build`);
  const base = await debianBase();
  const modules = await productionModules();
  const node = join(root, 'node_modules', 'node', 'bin', 'node');
  const layer = await layerOf('vpc-ipam', async (dir) => {
    mkdirSync(join(dir, 'usr', 'local', 'bin'), { recursive: true });
    copyFileSync(node, join(dir, 'usr', 'local', 'bin', 'node'));
    chmodSync(join(dir, 'usr', 'local', 'bin', 'node'), 0o755);
    // iptables' alternatives links are made by its maintainer script, which extract does not run
    mkdirSync(join(dir, 'usr', 'sbin'), { recursive: true });
    for (const t of [
      'iptables',
      'iptables-save',
      'iptables-restore',
      'ip6tables',
      'ip6tables-save',
      'ip6tables-restore',
    ])
      symlinkSync('xtables-nft-multi', join(dir, 'usr', 'sbin', t));
    const app = join(dir, 'app');
    mkdirSync(app, { recursive: true });
    copyFileSync(join(root, 'package.json'), join(app, 'package.json'));
    cpSync(join(root, 'src'), join(app, 'src'), { recursive: true });
    // The daemon as the chart runs it (the Dockerfile's layout): bundled, see scripts/bundle-daemon.ts.
    cpSync(join(root, 'dist', 'vpc-ipamd'), join(app, 'dist', 'vpc-ipamd'), { recursive: true });
    cpSync(modules, join(app, 'node_modules'), { recursive: true, verbatimSymlinks: true });
    mkdirSync(join(dir, 'opt', 'vpc-ipam', 'bin'), { recursive: true });
    for (const f of cni) {
      const to = join(dir, 'opt', 'vpc-ipam', 'bin', basename(f));
      copyFileSync(f, to);
      chmodSync(to, 0o755);
    }
    mkdirSync(join(dir, 'tmp'), { recursive: true });
    chmodSync(join(dir, 'tmp'), 0o1777);
  });
  const tag = await tagOf([base, layer], 'vpc-ipam');
  const ref = `registry.local/vpc-ipam:${tag}`;
  const archive = join(out, `vpc-ipam-${tag}.oci.tar`);
  if (!existsSync(archive)) {
    await writeOciArchive(archive, ref, [base, layer], {
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'NODE_ENV=production'],
      cmd: ['node', '--optimize-for-size', '/app/dist/vpc-ipamd/vpc-ipamd.mjs'],
      workingDir: '/app',
      user: '65532:65532',
    });
  }
  rmSync(layer);
  return { ref, archive };
}

export async function buildImages(): Promise<ImageSet> {
  mkdirSync(out, { recursive: true });
  const t0 = Date.now();
  const images: ImageSet = {
    pause: await pauseImage(),
    busybox: await busyboxImage(),
    product: await productImage(),
  };
  writeFileSync(IMAGES_JSON, `${JSON.stringify(images, null, 2)}\n`);
  say(
    `images ready in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${Object.values(images)
      .map((i) => i.ref)
      .join(', ')}`,
  );
  return images;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  buildImages().catch((e) => {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exit(1);
  });
}
