// Test helpers for suites that need LocalStack's EC2.
//
//   ec2Endpoint()          VPC_IPAM_EC2_ENDPOINT, default http://127.0.0.1:4566
//   requireLocalStack()    throws a loud error with the reason when LocalStack is not usable:
//                          suites call it in before() so they FAIL (never skip) without it
//   uniqueClusterName(p)   a fresh cluster name per test run (isolates runs in a shared LocalStack)
//   seedCluster({...})     seeds (or reads back) a cluster VPC, see localstack/seed.ts
//   deleteCluster({...})   best-effort cleanup of a seeded cluster
//   new LocalStackCluster(prefix)
//                          a suite's own cluster: seed() = requireLocalStack + seedCluster under a
//                          unique name (before), delete() = cleanup if it was seeded (after)
//   startInstanceImds(id, maxAgeMs)
//                          the IMDSv2 fake for one seeded instance, read live from LocalStack

import { randomBytes } from 'node:crypto';
import { checkLocalStack } from '../../localstack/health.ts';
import {
  DEFAULT_REGION,
  deleteCluster as deleteSeededCluster,
  type SeedOptions,
  type SeedResult,
  seedCluster as seed,
} from '../../localstack/seed.ts';
import { type ImdsFake, liveEc2Source, startImdsFake } from '../fakes/imds-aws.ts';

export type { SeedResult };

export function ec2Endpoint(): string {
  return process.env.VPC_IPAM_EC2_ENDPOINT ?? 'http://127.0.0.1:4566';
}

export function region(): string {
  return process.env.AWS_REGION ?? DEFAULT_REGION;
}

/** Resolves when LocalStack's EC2 is up; otherwise throws an error naming the reason. */
export async function requireLocalStack(endpoint = ec2Endpoint()): Promise<void> {
  await checkLocalStack(endpoint);
}

export function uniqueClusterName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

type ClusterOptions = Omit<SeedOptions, 'endpoint' | 'region'> & { endpoint?: string; region?: string };

export async function seedCluster(options: ClusterOptions): Promise<SeedResult> {
  return seed({ endpoint: ec2Endpoint(), region: region(), ...options });
}

export async function deleteCluster(options: ClusterOptions): Promise<string[]> {
  return deleteSeededCluster({ endpoint: ec2Endpoint(), region: region(), ...options });
}

/**
 * One suite's cluster in the shared LocalStack. seed() fails loudly (the reason, never a skip)
 * when LocalStack is not usable, then seeds a fresh VPC; delete() removes it if it was seeded,
 * reporting what could not be removed on stderr.
 */
export class LocalStackCluster {
  readonly name: string;
  private seeded: SeedResult | undefined;

  constructor(prefix: string) {
    this.name = uniqueClusterName(prefix);
  }

  async seed(): Promise<SeedResult> {
    await requireLocalStack();
    this.seeded = await seedCluster({ clusterName: this.name });
    return this.seeded;
  }

  async delete(): Promise<void> {
    if (!this.seeded) return;
    const problems = await deleteCluster({ clusterName: this.name });
    for (const p of problems) process.stderr.write(`cleanup warning (${this.name}): ${p}\n`);
  }
}

/** The IMDSv2 fake for a seeded instance, re-reading it from LocalStack at most every maxAgeMs. */
export function startInstanceImds(instanceId: string, maxAgeMs: number): Promise<ImdsFake> {
  return startImdsFake({
    source: liveEc2Source({ instanceId, endpoint: ec2Endpoint(), region: region() }, maxAgeMs),
  });
}
