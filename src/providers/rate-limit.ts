// Client-side rate limiting and retries for cloud API calls, shared by every provider.
//
// Clouds meter their APIs with token buckets (EC2: mutating ENI calls burst 100, refill 5/s; ARM
// writes 200, 10/s). We mirror those buckets client-side so a burst of pod starts queues here
// instead of being throttled there, and we retry what the cloud still throttles.
//
// Exported API:
//   createRateLimitedCaller(options) -> RateLimitedCaller
//     .call(api, bucket, fn, {recover}?)
//                             run fn (one cloud request) through the bucket's limiter; retry it
//                             with jittered exponential backoff while options.classify(err) says
//                             it is retryable, at most retry.maxAttempts attempts in total; every
//                             attempt takes a token and is reported to options.observer; the final
//                             failure is thrown as options.toProviderError(err) (a ProviderError
//                             thrown by fn itself is rethrown as is, never retried). After an
//                             attempt whose outcome is unknown (retryable, not throttled: a 5xx,
//                             a timeout, a reset connection) `recover` re-reads the cloud first:
//                             when the change did happen, its answer is the call's result and
//                             nothing is sent again.
//     .stop()                 drop queued calls and stop the limiters' timers.
//   backoffDelayMs(attempt, policy, random, retryAfterMs?)   the pure delay rule (exported for tests).
//   BucketConfig, RetryPolicy, ErrorClassification, RateLimitedCallerOptions: the knobs.
//
// Clock, sleep and random are injectable so the retry logic can be tested without waiting.

import Bottleneck from 'bottleneck';
import { isProviderError, type ProviderError } from './errors.ts';
import type { ApiCallObserver, CloudName } from './types.ts';

/** One token bucket: `burst` tokens at most, `refillPerSecond` tokens added back each second. */
export interface BucketConfig {
  burst: number;
  refillPerSecond: number;
  /** Calls in flight at once from this bucket (default unlimited). */
  maxConcurrent?: number;
}

export interface RetryPolicy {
  /** Total attempts, the first one included (>= 1). */
  maxAttempts: number;
  /** Backoff cap before jitter for attempt 1; doubles per attempt. */
  baseDelayMs: number;
  /** Upper bound of any computed backoff. */
  maxDelayMs: number;
  /** A server retry-after longer than this is not waited for: the call fails at once. */
  maxRetryAfterMs?: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxAttempts: 5,
  baseDelayMs: 200,
  maxDelayMs: 10_000,
  maxRetryAfterMs: 60_000,
};

/** What the cloud-specific code says about a failed attempt. */
export interface ErrorClassification {
  /** Worth trying again (throttling, 5xx, network resets). */
  retryable: boolean;
  /** The cloud refused because of rate limits (reported as outcome 'throttled'). */
  throttled: boolean;
  /** Server-advised wait (Retry-After), when the response carried one. */
  retryAfterMs?: number;
}

export interface RateLimitedCallerOptions<B extends string> {
  cloud: CloudName;
  buckets: Record<B, BucketConfig>;
  retry?: Partial<RetryPolicy>;
  classify(err: unknown): ErrorClassification;
  /** Maps the final failure; `api` is the call's name, for the message. */
  toProviderError(err: unknown, api: string): ProviderError;
  observer?: ApiCallObserver;
  /** Milliseconds, monotonic enough for durations (default performance.now). */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
  /** Uniform in [0, 1) (default Math.random). */
  random?: () => number;
}

/** Per-call options of RateLimitedCaller.call. */
export interface CallOptions<T> {
  /**
   * For mutations: after an attempt whose outcome is unknown (the request may have been applied,
   * then the answer was lost or replaced by a 5xx), look at the cloud. `{ value }` means the change
   * is there: the call resolves to value without sending it again. undefined means it is not: the
   * call retries (or fails when out of attempts). If recover itself throws, the call fails with
   * the attempt's error (a blind resend is what recover exists to avoid).
   */
  recover?: () => Promise<{ value: T } | undefined>;
}

export interface RateLimitedCaller<B extends string> {
  call<T>(api: string, bucket: B, fn: () => Promise<T>, options?: CallOptions<T>): Promise<T>;
  stop(): Promise<void>;
}

/**
 * Full-jitter exponential backoff: uniform in [0, min(maxDelay, base * 2^(attempt-1))), but never
 * less than the server's retry-after. `attempt` is the attempt that just failed (1-based).
 */
export function backoffDelayMs(
  attempt: number,
  policy: RetryPolicy,
  random: () => number,
  retryAfterMs?: number,
): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  const jittered = Math.floor(random() * cap);
  return retryAfterMs !== undefined && retryAfterMs > jittered ? retryAfterMs : jittered;
}

function validateBucket(name: string, b: BucketConfig): void {
  if (!Number.isFinite(b.burst) || b.burst < 1 || !Number.isInteger(b.burst)) {
    throw new RangeError(`rate limit bucket ${name}: burst must be an integer >= 1, got ${b.burst}`);
  }
  if (!Number.isFinite(b.refillPerSecond) || b.refillPerSecond <= 0) {
    throw new RangeError(`rate limit bucket ${name}: refillPerSecond must be > 0, got ${b.refillPerSecond}`);
  }
  if (b.maxConcurrent !== undefined && (!Number.isInteger(b.maxConcurrent) || b.maxConcurrent < 1)) {
    throw new RangeError(`rate limit bucket ${name}: maxConcurrent must be an integer >= 1`);
  }
}

/**
 * A bottleneck limiter behaving like a token bucket: the reservoir is the bucket, topped up one
 * token at a time at the refill rate, never beyond the burst.
 */
function bucketLimiter(b: BucketConfig): Bottleneck {
  // Bottleneck adds reservoirIncreaseAmount at most once per heartbeat tick, so the heartbeat is
  // the refill clock: tick every periodMs (>= 50 ms to keep timers cheap), adding the tokens due
  // in that period. The increase interval is a little shorter than the tick so timer jitter never
  // makes a tick skip its refill (which would halve the rate).
  const periodMs = Math.max(50, Math.round(1000 / b.refillPerSecond));
  const amount = Math.max(1, Math.round((b.refillPerSecond * periodMs) / 1000));
  const options: Bottleneck.ConstructorOptions & { heartbeatInterval: number } = {
    reservoir: b.burst,
    reservoirIncreaseInterval: Math.max(1, periodMs - Math.min(10, Math.floor(periodMs / 4))),
    reservoirIncreaseAmount: amount,
    reservoirIncreaseMaximum: b.burst,
    maxConcurrent: b.maxConcurrent ?? null,
    heartbeatInterval: periodMs,
  };
  return new Bottleneck(options);
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function createRateLimitedCaller<B extends string>(
  options: RateLimitedCallerOptions<B>,
): RateLimitedCaller<B> {
  const policy: RetryPolicy = { ...DEFAULT_RETRY_POLICY, ...options.retry };
  if (!Number.isInteger(policy.maxAttempts) || policy.maxAttempts < 1) {
    throw new RangeError(`retry.maxAttempts must be an integer >= 1, got ${policy.maxAttempts}`);
  }
  const limiters = new Map<string, Bottleneck>();
  for (const [name, cfg] of Object.entries<BucketConfig>(options.buckets)) {
    validateBucket(name, cfg);
    limiters.set(name, bucketLimiter(cfg));
  }
  const now = options.now ?? (() => performance.now());
  const sleep = options.sleep ?? defaultSleep;
  const random = options.random ?? Math.random;

  const report = (
    api: string,
    outcome: 'ok' | 'throttled' | 'error',
    durationMs: number,
    attempt: number,
  ) => {
    try {
      options.observer?.onCall({ cloud: options.cloud, api, outcome, durationMs, attempt });
    } catch {
      // Metrics must never break a cloud call.
    }
  };

  async function call<T>(api: string, bucket: B, fn: () => Promise<T>, opts?: CallOptions<T>): Promise<T> {
    const limiter = limiters.get(bucket);
    if (!limiter) throw new RangeError(`unknown rate limit bucket ${bucket}`);
    // Bottleneck's refill timer is unref'd; keep the process alive while we wait for a token.
    const keepAlive = setInterval(() => {}, 1 << 30);
    try {
      for (let attempt = 1; ; attempt++) {
        const started = now();
        try {
          const result = await limiter.schedule(fn);
          report(api, 'ok', now() - started, attempt);
          return result;
        } catch (err) {
          if (isProviderError(err)) {
            report(api, err.code === 'THROTTLED' ? 'throttled' : 'error', now() - started, attempt);
            throw err;
          }
          const c = options.classify(err);
          report(api, c.throttled ? 'throttled' : 'error', now() - started, attempt);
          const tooLong =
            c.retryAfterMs !== undefined &&
            policy.maxRetryAfterMs !== undefined &&
            c.retryAfterMs > policy.maxRetryAfterMs;
          if (c.retryable && !c.throttled && opts?.recover) {
            let found: { value: T } | undefined;
            try {
              found = await opts.recover();
            } catch {
              throw options.toProviderError(err, api);
            }
            if (found) return found.value;
          }
          if (!c.retryable || attempt >= policy.maxAttempts || tooLong) {
            throw options.toProviderError(err, api);
          }
          await sleep(backoffDelayMs(attempt, policy, random, c.retryAfterMs));
        }
      }
    } finally {
      clearInterval(keepAlive);
    }
  }

  async function stop(): Promise<void> {
    await Promise.all([...limiters.values()].map((l) => l.stop({ dropWaitingJobs: true })));
  }

  return { call, stop };
}
