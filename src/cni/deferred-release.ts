// Releases the daemon owes: a DEL that finds vpc-ipamd down (restarting, crash-looping) cleans the
// host side and succeeds, so the runtime never asks again. Without a durable note the allocation
// stayed in the daemon until a CNI GC or the pod watcher freed it — and neither comes for a failed
// sandbox of a pod that lives on (or on runtimes without CNI GC), so every restart could leak IPs
// and the pool grew to serve them (the chaos soak's m5.4xlarge held 6 ENIs for 3 pods). The
// plugin writes one small file per owed release beside the socket; the daemon frees the key
// (only while it still holds that IP) once it runs again and removes the file.
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ReleaseRequest } from '../ipam-daemon/api-types.ts';
import { validateContainerId, validateIfName, validateIpv4 } from '../netutils/validate.ts';

/** The directory of owed releases for the daemon listening on `socketPath`. */
export function deferredReleaseDir(socketPath: string): string {
  return `${socketPath}.deferred-del`;
}

const fileOf = (key: ReleaseRequest) =>
  `${createHash('sha256').update(`${key.containerId}\0${key.ifName}`).digest('hex').slice(0, 32)}.json`;

/** The plugin's side: note that `key` (holding `ip`, when known) was DELeted while the daemon was down. */
export async function writeDeferredRelease(socketPath: string, key: ReleaseRequest): Promise<void> {
  const dir = deferredReleaseDir(socketPath);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, fileOf(key));
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(key), { mode: 0o600 });
  await rename(tmp, file);
}

/** The daemon's side: the owed releases (unreadable or invalid notes are returned with key null). */
export async function readDeferredReleases(
  socketPath: string,
): Promise<Array<{ file: string; key: ReleaseRequest | null }>> {
  const dir = deferredReleaseDir(socketPath);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  const out: Array<{ file: string; key: ReleaseRequest | null }> = [];
  for (const name of names) {
    if (!name.endsWith('.json')) continue;
    const file = join(dir, name);
    out.push({ file, key: await parseNote(file) });
  }
  return out;
}

async function parseNote(file: string): Promise<ReleaseRequest | null> {
  try {
    const r = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    const key: ReleaseRequest = {
      containerId: validateContainerId(String(r.containerId)),
      ifName: validateIfName(String(r.ifName)),
    };
    if (r.ip !== undefined) key.ip = validateIpv4(String(r.ip));
    return key;
  } catch {
    return null;
  }
}

export async function removeDeferredRelease(file: string): Promise<void> {
  await unlink(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}
