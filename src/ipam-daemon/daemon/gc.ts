// Releasing allocations the runtime no longer lists (CNI GC) or whose pod is gone (the pod
// watcher). Either may be wrong about a pod that still runs, so an allocation goes only when
// nothing on the node still carries it: no host route to its IP and no host veth of its pod.
// CNI GC also leaves alone another network's allocations and ones young enough to be an ADD in
// flight.

import { readDeferredReleases, removeDeferredRelease } from '../../cni/deferred-release.ts';
import type { AttachmentKey, GcResponse, ReleaseResponse } from '../api-types.ts';
import { keyOf } from '../datastore.ts';
import { type DaemonCore, errText } from './core.ts';
import { isWired } from './route-guard.ts';

export const DEFAULT_GC_GRACE_MS = 60_000;

/** Release the unlisted allocations of `network` that nothing on the node still carries (CNI GC). */
export async function collectGarbage(
  core: DaemonCore,
  valid: AttachmentKey[],
  network?: string,
): Promise<GcResponse> {
  const { requests, routes } = core.parts;
  requests.assertNotStopped();
  const keep = new Set(valid.map(keyOf));
  const graceMs = core.opts.gcGraceMs ?? DEFAULT_GC_GRACE_MS;
  const now = core.clock.now();
  const kept = { young: 0, wired: 0, unverified: 0 };
  const candidates = core
    .mustDs()
    .list()
    .filter((a) => {
      // Recovered entries have no runtime key; they go when their host route does.
      if (keep.has(keyOf(a)) || a.recoveredFrom !== undefined) return false;
      // Another network's (Multus, a second runtime) or made before networks were recorded.
      if (a.network !== network) return false;
      const age = now - Date.parse(a.assignedAt);
      if (!(age >= graceMs)) {
        kept.young++;
        return false;
      }
      return true;
    });
  const released: AttachmentKey[] = [];
  if (candidates.length > 0) {
    const wiring = await routes.wiring();
    if (!wiring) kept.unverified = candidates.length;
    else {
      for (const a of candidates) {
        const r = await requests.releaseIf(a, async () => !isWired(wiring, a, core.opts.vethPrefix));
        if (r.released) released.push({ containerId: a.containerId, ifName: a.ifName });
        else if (r.kept) kept.wired++;
      }
    }
  }
  if (released.length > 0)
    core.log.info({ released: released.length, network }, 'gc released stale allocations');
  if (kept.wired + kept.unverified > 0) {
    core.log.warn(
      { ...kept, network },
      'gc kept allocations the runtime no longer lists: their pod is still wired on the node (or the wiring cannot be read)',
    );
  }
  return { released, kept };
}

/**
 * The pod watcher's release: only when neither a host route to the IP nor the pod's host veth
 * exists (read now). `kept` says the pod is still wired, or the wiring could not be read.
 */
export async function releaseIfUnwired(
  core: DaemonCore,
  key: AttachmentKey,
): Promise<ReleaseResponse & { kept?: boolean }> {
  const { requests, routes } = core.parts;
  requests.assertNotStopped();
  if (!core.mustDs().get(key)) return { released: null };
  const wiring = await routes.wiring();
  if (!wiring) return { released: null, kept: true };
  return requests.releaseIf(key, async (a) => !isWired(wiring, a, core.opts.vethPrefix));
}

/**
 * The releases plugins noted while this daemon was down (a DEL it never saw): each key is freed
 * while it still holds the noted IP, and its note removed. Returns how many were released.
 */
export async function releaseDeferred(core: DaemonCore): Promise<number> {
  const socketPath = core.opts.socketPath;
  if (!socketPath) return 0;
  let released = 0;
  let notes: Awaited<ReturnType<typeof readDeferredReleases>>;
  try {
    notes = await readDeferredReleases(socketPath);
  } catch (err) {
    core.log.warn({ err: errText(err) }, 'cannot read the releases plugins deferred; retrying');
    return 0;
  }
  for (const { file, key } of notes) {
    try {
      if (key && (await core.parts.requests.release(key)).released) released++;
      await removeDeferredRelease(file);
    } catch (err) {
      core.log.warn({ file, err: errText(err) }, 'a deferred release failed; retrying');
    }
  }
  if (released > 0) core.log.info({ released }, 'released allocations DELeted while the daemon was down');
  return released;
}
