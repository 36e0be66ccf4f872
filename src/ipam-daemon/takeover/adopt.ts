// First start on a node aws-node ran: adopt its pods from its checkpoint (aws-checkpoint.ts) and
// their host routes (adopt-plan.ts), under their own keys, so the runtime's DEL for them works and
// their IPs are never handed to another pod. Runs once, when the daemon has no checkpoint of its
// own yet; afterwards ours is the truth (aws-node's file would be stale). Route recovery runs right
// after and holds any IP still routed to an AWS veth that the file did not name.

import { readFile } from 'node:fs/promises';
import type { DaemonCore } from '../daemon/core.ts';
import { errText } from '../daemon/core.ts';
import type { CheckpointOutcome } from '../daemon/route-guard.ts';
import { planAdoption } from './adopt-plan.ts';
import { MAX_AWS_CHECKPOINT_BYTES, parseAwsCheckpoint } from './aws-checkpoint.ts';

export interface TakeoverOptions {
  /** Adopt ENIs aws-node created for this instance and cluster (its description and tags). */
  adoptInterfaces: boolean;
  /** aws-node's checkpoint, read on a first start (no checkpoint of ours); null: not read. */
  awsCheckpointPath: string | null;
  /** Deletes the priority 512/1536 rules left for IPs of pods that are gone. */
  pruneRules?: (ips: string[]) => Promise<void>;
}

export interface AdoptionReport {
  adopted: number;
  stale: number;
  skipped: string[];
}

async function readSmall(path: string): Promise<string | null> {
  try {
    const text = await readFile(path, 'utf8');
    return text.length > MAX_AWS_CHECKPOINT_BYTES ? text.slice(0, MAX_AWS_CHECKPOINT_BYTES + 1) : text;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

export async function adoptAwsAllocations(
  core: DaemonCore,
  checkpoint: CheckpointOutcome,
): Promise<AdoptionReport | null> {
  const t = core.opts.takeover;
  const path = t?.awsCheckpointPath;
  if (!t || !path || checkpoint !== 'missing') return null;
  const { log } = core;
  let text: string | null;
  try {
    text = await readSmall(path);
  } catch (err) {
    log.error(
      { path, err: errText(err) },
      'takeover: cannot read the AWS VPC CNI checkpoint; pods are recovered from their host routes only',
    );
    return null;
  }
  if (text === null) {
    log.info({ path }, 'takeover: no AWS VPC CNI checkpoint (not a node aws-node ran)');
    return null;
  }
  const parsed = parseAwsCheckpoint(text);
  if (!parsed.ok) {
    log.error(
      { path, reason: parsed.reason },
      'takeover: AWS VPC CNI checkpoint unusable; pods are recovered from their host routes only',
    );
    return null;
  }
  const read = core.opts.podRoutes;
  let routes: Awaited<ReturnType<NonNullable<typeof read>>> = [];
  if (read) {
    try {
      routes = await read();
    } catch (err) {
      // Without the routes we cannot tell live pods from gone ones: adopt nothing rather than guess.
      log.error(
        { err: errText(err) },
        'takeover: cannot read pod host routes; nothing adopted from the AWS checkpoint',
      );
      return null;
    }
  }
  const ds = core.mustDs();
  const plan = planAdoption(
    parsed.entries,
    routes,
    (ip) => core.parts.routes.holderOf(ip),
    (containerId, ifName) => ds.get({ containerId, ifName }) !== undefined,
  );
  const now = core.clock.now();
  const skipped = [...parsed.skipped];
  let adopted = 0;
  for (const { entry, hostVeth } of plan.adopt) {
    const st = ds.ipState(entry.ip);
    const ok =
      st !== undefined &&
      ds.restoreAllocation({
        containerId: entry.containerId,
        ifName: entry.ifName,
        ip: entry.ip,
        interfaceId: st.interfaceId,
        assignedAt: entry.assignedAt ?? new Date(now).toISOString(),
        recoveredFrom: hostVeth,
        ...(entry.podNamespace !== undefined ? { podNamespace: entry.podNamespace } : {}),
        ...(entry.podName !== undefined ? { podName: entry.podName } : {}),
      });
    if (ok) adopted++;
    else skipped.push(`${entry.containerId}/${entry.ifName} -> ${entry.ip}: could not be held`);
  }
  for (const e of plan.notInPool)
    skipped.push(`${e.containerId}/${e.ifName} -> ${e.ip}: not on an interface the pool uses`);
  for (const c of plan.conflicts) skipped.push(`${c.entry.containerId}/${c.entry.ifName}: ${c.why}`);
  if (plan.stale.length > 0 && t.pruneRules) {
    try {
      await t.pruneRules(plan.stale.map((e) => e.ip));
    } catch (err) {
      log.warn({ err: errText(err) }, 'takeover: could not prune the rules of gone pods');
    }
  }
  log.info(
    {
      path,
      adopted,
      gone: plan.stale.map((e) => `${e.containerId}/${e.ifName} -> ${e.ip}`),
      skipped,
    },
    'takeover: adopted the AWS VPC CNI allocations of running pods',
  );
  return { adopted, stale: plan.stale.length, skipped };
}
