import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { OtherProviderError, type ProviderError, ThrottledError } from '../../../src/providers/errors.ts';
import {
  backoffDelayMs,
  createRateLimitedCaller,
  type ErrorClassification,
  type RetryPolicy,
} from '../../../src/providers/rate-limit.ts';
import type { ApiCallEvent } from '../../../src/providers/types.ts';

class FakeCloudError extends Error {
  readonly kind: 'throttle' | 'server' | 'bad';
  readonly retryAfterMs: number | undefined;
  constructor(kind: 'throttle' | 'server' | 'bad', retryAfterMs?: number) {
    super(kind);
    this.kind = kind;
    this.retryAfterMs = retryAfterMs;
  }
}

function classify(err: unknown): ErrorClassification {
  if (!(err instanceof FakeCloudError)) return { retryable: false, throttled: false };
  if (err.kind === 'throttle') return { retryable: true, throttled: true, retryAfterMs: err.retryAfterMs };
  if (err.kind === 'server') return { retryable: true, throttled: false };
  return { retryable: false, throttled: false };
}

function toProviderError(err: unknown): ProviderError {
  if (err instanceof FakeCloudError && err.kind === 'throttle') return new ThrottledError('throttled');
  return new OtherProviderError(String(err));
}

function harness(retry: Partial<RetryPolicy> = {}, random = () => 0.5) {
  const events: ApiCallEvent[] = [];
  const sleeps: number[] = [];
  const caller = createRateLimitedCaller({
    cloud: 'aws',
    buckets: { mutate: { burst: 1000, refillPerSecond: 1000 } },
    retry: { maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 1000, ...retry },
    classify,
    toProviderError,
    observer: { onCall: (e) => events.push(e) },
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random,
  });
  return { caller, events, sleeps };
}

/** fn failing with the given errors in order, then succeeding. */
function failing(errors: Error[]) {
  let calls = 0;
  const fn = async () => {
    const e = errors[calls++];
    if (e) throw e;
    return `ok after ${calls}`;
  };
  return { fn, calls: () => calls };
}

describe('backoffDelayMs', () => {
  const policy: RetryPolicy = { maxAttempts: 10, baseDelayMs: 100, maxDelayMs: 1000 };
  test('caps double per attempt up to maxDelayMs', () => {
    const max = (attempt: number) => backoffDelayMs(attempt, policy, () => 0.999999);
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(max), [99, 199, 399, 799, 999, 999]);
  });
  test('full jitter: random 0 gives 0', () => {
    assert.equal(
      backoffDelayMs(3, policy, () => 0),
      0,
    );
  });
  test('never shorter than the server retry-after', () => {
    assert.equal(
      backoffDelayMs(1, policy, () => 0.5, 5000),
      5000,
    );
    assert.equal(
      backoffDelayMs(4, policy, () => 0.5, 10),
      400,
    );
  });
});

describe('createRateLimitedCaller retries', () => {
  test('retries throttling until success and reports every attempt', async () => {
    const { caller, events, sleeps } = harness();
    const f = failing([new FakeCloudError('throttle'), new FakeCloudError('server')]);
    assert.equal(await caller.call('AssignPrivateIpAddresses', 'mutate', f.fn), 'ok after 3');
    assert.equal(f.calls(), 3);
    assert.deepEqual(
      events.map((e) => [e.api, e.outcome, e.attempt]),
      [
        ['AssignPrivateIpAddresses', 'throttled', 1],
        ['AssignPrivateIpAddresses', 'error', 2],
        ['AssignPrivateIpAddresses', 'ok', 3],
      ],
    );
    assert.deepEqual(sleeps, [50, 100]);
    for (const e of events) assert.ok(e.durationMs >= 0);
    await caller.stop();
  });

  test('gives up after exactly maxAttempts with the mapped error', async () => {
    const { caller, events, sleeps } = harness({ maxAttempts: 3 });
    const f = failing(Array.from({ length: 10 }, () => new FakeCloudError('throttle')));
    await assert.rejects(caller.call('X', 'mutate', f.fn), ThrottledError);
    assert.equal(f.calls(), 3);
    assert.equal(events.length, 3);
    assert.equal(sleeps.length, 2);
    await caller.stop();
  });

  test('recover: an unknown outcome (5xx) is re-read before a resend; a found change is the result', async () => {
    const { caller } = harness();
    const f = failing([new FakeCloudError('server')]);
    let reads = 0;
    const out = await caller.call('X', 'mutate', f.fn, {
      recover: async () => {
        reads++;
        return { value: 'found' };
      },
    });
    assert.equal(out, 'found');
    assert.equal(f.calls(), 1, 'not sent again');
    assert.equal(reads, 1);
    await caller.stop();
  });

  test('recover: not found means resend; throttling is never re-read; last attempt is re-read too', async () => {
    const { caller } = harness({ maxAttempts: 3 });
    const f = failing([new FakeCloudError('throttle'), new FakeCloudError('server')]);
    let reads = 0;
    const recover = async () => {
      reads++;
      return undefined;
    };
    assert.equal(await caller.call('X', 'mutate', f.fn, { recover }), 'ok after 3');
    assert.equal(reads, 1, 'only after the 5xx');
    const g = failing([1, 2, 3].map(() => new FakeCloudError('server')));
    let n = 0;
    const late = await caller.call('X', 'mutate', g.fn, {
      recover: async () => (++n === 3 ? { value: 'late' } : undefined),
    });
    assert.equal(late, 'late', 'the change of the last attempt is found after it');
    assert.equal(g.calls(), 3);
    await caller.stop();
  });

  test('recover: a failing re-read fails the call with the attempt error, no blind resend', async () => {
    const { caller } = harness();
    const f = failing([new FakeCloudError('server')]);
    await assert.rejects(
      caller.call('X', 'mutate', f.fn, {
        recover: async () => {
          throw new Error('describe failed');
        },
      }),
      (e) => e instanceof OtherProviderError && /server/.test(e.message),
    );
    assert.equal(f.calls(), 1);
    await caller.stop();
  });

  test('non-retryable errors fail on the first attempt', async () => {
    const { caller, sleeps } = harness();
    const f = failing([new FakeCloudError('bad')]);
    await assert.rejects(caller.call('X', 'mutate', f.fn), OtherProviderError);
    assert.equal(f.calls(), 1);
    assert.deepEqual(sleeps, []);
    await caller.stop();
  });

  test('honours retry-after, and fails at once when it exceeds maxRetryAfterMs', async () => {
    const { caller, sleeps } = harness({ maxRetryAfterMs: 3000 });
    const ok = failing([new FakeCloudError('throttle', 2500)]);
    await caller.call('X', 'mutate', ok.fn);
    assert.deepEqual(sleeps, [2500]);
    const tooLong = failing([new FakeCloudError('throttle', 3001)]);
    await assert.rejects(caller.call('X', 'mutate', tooLong.fn), ThrottledError);
    assert.equal(tooLong.calls(), 1);
    await caller.stop();
  });

  test('a ProviderError thrown by fn passes through untouched', async () => {
    const { caller, events } = harness();
    const mine = new ThrottledError('own limit');
    await assert.rejects(
      caller.call('X', 'mutate', async () => {
        throw mine;
      }),
      (e) => e === mine,
    );
    assert.equal(events[0]?.outcome, 'throttled');
    await caller.stop();
  });

  test('a throwing observer does not break the call', async () => {
    const caller = createRateLimitedCaller({
      cloud: 'aws',
      buckets: { b: { burst: 1, refillPerSecond: 1 } },
      classify,
      toProviderError,
      observer: {
        onCall() {
          throw new Error('boom');
        },
      },
    });
    assert.equal(await caller.call('X', 'b', async () => 7), 7);
    await caller.stop();
  });

  test('rejects invalid configuration with the reason', () => {
    const base = { cloud: 'aws' as const, classify, toProviderError };
    assert.throws(
      () => createRateLimitedCaller({ ...base, buckets: { m: { burst: 0, refillPerSecond: 1 } } }),
      /bucket m: burst/,
    );
    assert.throws(
      () => createRateLimitedCaller({ ...base, buckets: { m: { burst: 1, refillPerSecond: 0 } } }),
      /refillPerSecond/,
    );
    assert.throws(
      () =>
        createRateLimitedCaller({
          ...base,
          buckets: { m: { burst: 1, refillPerSecond: 1 } },
          retry: { maxAttempts: 0 },
        }),
      /maxAttempts/,
    );
  });
});

describe('token bucket limiter (real time, small numbers)', () => {
  test('burst passes at once, then calls wait for refill', async () => {
    const caller = createRateLimitedCaller({
      cloud: 'aws',
      buckets: { describe: { burst: 3, refillPerSecond: 10 } },
      classify,
      toProviderError,
    });
    const t0 = performance.now();
    const done: number[] = [];
    await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        caller.call('Describe', 'describe', async () => {
          done[i] = performance.now() - t0;
        }),
      ),
    );
    const sorted = [...done].sort((a, b) => a - b);
    // First 3 from the burst right away; the other 3 need one 100 ms refill each. The upper
    // bounds leave room for a loaded machine and still tell a burst (< 150, else >= 200) and
    // 10/s (< 1500, else 3 s at 1/s) apart.
    assert.ok(sorted[2]! < 150, `burst calls took ${sorted[2]} ms`);
    assert.ok(sorted[3]! >= 80, `4th call ran after ${sorted[3]} ms, before any refill`);
    assert.ok(sorted[5]! >= 250, `6th call ran after ${sorted[5]} ms: refill faster than 10/s`);
    assert.ok(sorted[5]! < 1500, `6th call took ${sorted[5]} ms: refill slower than 10/s`);
    await caller.stop();
  });

  test('unknown bucket is a clear error', async () => {
    const caller = createRateLimitedCaller({
      cloud: 'aws',
      buckets: { a: { burst: 1, refillPerSecond: 1 } },
      classify,
      toProviderError,
    });
    await assert.rejects(
      caller.call('X', 'b' as 'a', async () => 1),
      /unknown rate limit bucket b/,
    );
    await caller.stop();
  });
});
