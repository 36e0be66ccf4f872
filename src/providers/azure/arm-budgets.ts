// ARM's request budgets, mirrored client-side. ARM meters per subscription and region with token
// buckets (reads burst 250 / 25 per s, writes burst 200 / 10 per s); on top, the
// Microsoft.Network resource provider allows about 1,000 PUT/DELETE per 5 minutes. The first two
// are buckets of the shared rate-limited caller; the network budget is a second bucket every
// write must also pass, kept here because one call can only take one of the caller's buckets.
import Bottleneck from 'bottleneck';
import type { BucketConfig } from '../rate-limit.ts';

export type ArmBucket = 'armRead' | 'armWrite';

export interface AzureLimiterConfig {
  armRead: BucketConfig;
  armWrite: BucketConfig;
  /** Microsoft.Network PUT/DELETE budget. */
  networkWrite: BucketConfig;
}

export const DEFAULT_AZURE_LIMITS: AzureLimiterConfig = {
  armRead: { burst: 250, refillPerSecond: 25 },
  armWrite: { burst: 200, refillPerSecond: 10 },
  networkWrite: { burst: 1000, refillPerSecond: 1000 / 300 },
};

/** A token bucket as a bottleneck reservoir: `burst` tokens, topped up at the refill rate. */
export function createBucket(b: BucketConfig): Bottleneck {
  if (!Number.isInteger(b.burst) || b.burst < 1)
    throw new RangeError(`bucket burst must be an integer >= 1, got ${b.burst}`);
  if (!Number.isFinite(b.refillPerSecond) || b.refillPerSecond <= 0) {
    throw new RangeError(`bucket refillPerSecond must be > 0, got ${b.refillPerSecond}`);
  }
  const intervalMs = Math.max(1, Math.round(1000 / b.refillPerSecond));
  return new Bottleneck({
    reservoir: b.burst,
    reservoirIncreaseInterval: intervalMs,
    reservoirIncreaseAmount: Math.max(1, Math.round((b.refillPerSecond * intervalMs) / 1000)),
    reservoirIncreaseMaximum: b.burst,
    maxConcurrent: b.maxConcurrent ?? null,
  });
}
