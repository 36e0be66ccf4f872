// Start-up: rebuild the allocations from the checkpoint against what the cloud lists now, and say
// whether the checkpoint could be trusted (the route recovery that follows is stricter when not).

import type { InterfaceInfo } from '../../providers/types.ts';
import { loadCheckpoint, removeStaleTemps } from '../checkpoint.ts';
import { type Datastore, keyOf } from '../datastore.ts';
import type { DaemonCore } from './core.ts';
import type { CheckpointOutcome } from './route-guard.ts';

export async function restoreFromCheckpoint(
  core: DaemonCore,
  ds: Datastore,
  interfaces: InterfaceInfo[],
): Promise<CheckpointOutcome> {
  const { log } = core;
  const path = core.opts.checkpointPath;
  const stale = await removeStaleTemps(path);
  if (stale.length > 0) log.warn({ files: stale }, 'removed temp checkpoint files left by a crash');
  const loaded = await loadCheckpoint(path, () => core.clock.now());
  const fromRoutes = core.opts.podRoutes !== undefined;
  if (loaded.kind === 'missing') {
    log.info(
      { path },
      fromRoutes
        ? 'no checkpoint: IPs of running pods are recovered from their host routes, the rest are free'
        : 'no checkpoint: starting with every IP on the interfaces free',
    );
    return 'missing';
  }
  if (loaded.kind === 'corrupt') {
    log.error(
      {
        path,
        reason: loaded.reason,
        movedTo: loaded.movedTo,
        ipsOnInterfaces: interfaces.flatMap((i) => i.secondaryIps).length,
      },
      fromRoutes
        ? 'CHECKPOINT CORRUPT: moved aside; rebuilding from cloud state, IPs of running pods are recovered from their host routes'
        : 'CHECKPOINT CORRUPT: moved aside; rebuilding from cloud state with every IP free. Pods still running on this node may share an IP with new pods until they are restarted',
    );
    return 'corrupt';
  }
  const data = loaded.data;
  if (core.node && data.instanceId !== core.node.instanceId) {
    log.error(
      {
        checkpointInstance: data.instanceId,
        instanceId: core.node.instanceId,
        dropped: data.allocations.length,
      },
      'checkpoint belongs to another instance; ignoring its allocations',
    );
    return 'foreign';
  }
  core.parts.checkpoint.restoreIntents(data.intents);
  const repairs: string[] = [];
  for (const a of data.allocations) {
    const st = ds.ipState(a.ip);
    if (!st) {
      repairs.push(`dropped ${keyOf(a)} -> ${a.ip}: the IP is no longer on this node's interfaces`);
      continue;
    }
    const moved = st.interfaceId !== a.interfaceId;
    if (!ds.restoreAllocation({ ...a, interfaceId: st.interfaceId })) {
      repairs.push(`dropped ${keyOf(a)} -> ${a.ip}: the IP or key is held twice in the checkpoint`);
      continue;
    }
    if (moved) repairs.push(`${keyOf(a)} -> ${a.ip}: now on ${st.interfaceId} (was ${a.interfaceId})`);
  }
  for (const c of data.cooling) {
    if (!ds.restoreCooling(c.ip, c.coolUntil) && ds.ipState(c.ip) === undefined) {
      repairs.push(`forgot cooling ${c.ip}: no longer on this node`);
    }
  }
  ds.tick(core.clock.now());
  const known = new Set([...data.allocations.map((a) => a.ip), ...data.cooling.map((c) => c.ip)]);
  const freed = interfaces
    .flatMap((i) => i.secondaryIps)
    .filter((ip) => !known.has(ip) && ds.ipState(ip) !== undefined);
  log.info(
    { restored: ds.size, repairs: repairs.length, newFree: freed.length },
    'restored allocations from checkpoint + cloud state',
  );
  for (const r of repairs) log.warn({ repair: r }, 'checkpoint repair');
  return 'ok';
}
