// CNI GC: the runtime lists the attachments it still has; allocations it does not list are released.

import type { AttachmentKey, GcResponse } from '../api-types.ts';
import { keyOf } from '../datastore.ts';
import type { DaemonCore } from './core.ts';

/** Release every allocation whose key is not in `valid` (CNI GC). */
export async function collectGarbage(core: DaemonCore, valid: AttachmentKey[]): Promise<GcResponse> {
  const { requests } = core.parts;
  requests.assertNotStopped();
  const keep = new Set(valid.map(keyOf));
  const released: AttachmentKey[] = [];
  for (const a of core.mustDs().list()) {
    // Recovered entries have no runtime key; they go when their host route does.
    if (keep.has(keyOf(a)) || a.recoveredFrom !== undefined) continue;
    const r = await requests.release(a);
    if (r.released) released.push({ containerId: a.containerId, ifName: a.ifName });
  }
  if (released.length > 0) core.log.info({ released: released.length }, 'gc released stale allocations');
  return { released };
}
