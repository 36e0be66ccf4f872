// Writes OCI image archives (oci-layout + index.json + blobs, uncompressed layers) from directory
// trees, without Docker or a registry: what `ctr images import` loads into a node's containerd.
// Layers are reproducible tars (sorted names, mtime 0, root-owned), so the same tree gives the same
// digest and the image tag can be a content hash.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const pexec = promisify(execFile);

export interface Blob {
  digest: string;
  size: number;
}

export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path)
      .on('data', (c) => h.update(c))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

/** A reproducible tar of a directory's contents. */
export async function tarDirectory(dir: string, out: string): Promise<void> {
  await pexec(
    'tar',
    [
      '--sort=name',
      '--mtime=@0',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--xattrs',
      '-C',
      dir,
      '-cf',
      out,
      '.',
    ],
    { maxBuffer: 16 << 20 },
  );
}

export interface ImageConfig {
  env?: string[];
  cmd?: string[];
  entrypoint?: string[];
  workingDir?: string;
  user?: string;
}

/**
 * Builds an OCI archive at `out` from layer tars (bottom first), naming the image `ref`
 * (e.g. registry.local/busybox:1.35). Returns the manifest digest.
 */
export async function writeOciArchive(
  out: string,
  ref: string,
  layers: string[],
  config: ImageConfig,
): Promise<string> {
  const work = `${out}.work-${process.pid}`;
  rmSync(work, { recursive: true, force: true });
  const blobs = join(work, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const addFile = async (path: string, move: boolean): Promise<Blob> => {
    const digest = await sha256File(path);
    const size = statSync(path).size;
    if (move) renameSync(path, join(blobs, digest));
    else await pexec('cp', ['--reflink=auto', path, join(blobs, digest)]);
    return { digest: `sha256:${digest}`, size };
  };
  const addJson = (value: unknown): Blob => {
    const text = JSON.stringify(value);
    const digest = createHash('sha256').update(text).digest('hex');
    writeFileSync(join(blobs, digest), text);
    return { digest: `sha256:${digest}`, size: Buffer.byteLength(text) };
  };
  try {
    const layerBlobs: Blob[] = [];
    for (const l of layers) layerBlobs.push(await addFile(l, false));
    const cfg = addJson({
      architecture: 'amd64',
      os: 'linux',
      config: {
        Env: config.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        ...(config.cmd ? { Cmd: config.cmd } : {}),
        ...(config.entrypoint ? { Entrypoint: config.entrypoint } : {}),
        ...(config.workingDir ? { WorkingDir: config.workingDir } : {}),
        ...(config.user ? { User: config.user } : {}),
      },
      rootfs: { type: 'layers', diff_ids: layerBlobs.map((b) => b.digest) },
    });
    const manifest = addJson({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...cfg },
      layers: layerBlobs.map((b) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...b })),
    });
    writeFileSync(join(work, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    writeFileSync(
      join(work, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            ...manifest,
            platform: { architecture: 'amd64', os: 'linux' },
            annotations: {
              'io.containerd.image.name': ref,
              'org.opencontainers.image.ref.name': ref.slice(ref.lastIndexOf(':') + 1),
            },
          },
        ],
      }),
    );
    const tmp = `${out}.tmp-${process.pid}`;
    await pexec('tar', ['-C', work, '-cf', tmp, 'oci-layout', 'index.json', 'blobs']);
    renameSync(tmp, out);
    return manifest.digest;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
