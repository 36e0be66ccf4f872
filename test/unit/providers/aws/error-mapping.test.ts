import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  classifyEc2Error,
  ec2ErrorCode,
  toProviderError,
} from '../../../../src/providers/aws/error-mapping.ts';
import {
  InterfaceInUseError,
  LimitExceededError,
  NotFoundError,
  OtherProviderError,
  SubnetExhaustedError,
  ThrottledError,
  UnauthorizedError,
} from '../../../../src/providers/errors.ts';

/** The shape of an SDK v3 EC2 service exception. */
function sdkError(name: string, status: number, extra: Record<string, unknown> = {}) {
  return Object.assign(new Error(`${name} happened`), {
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status, requestId: 'req-1234' },
    ...extra,
  });
}

describe('toProviderError', () => {
  const cases: [string, number, new (...a: never[]) => Error][] = [
    ['RequestLimitExceeded', 503, ThrottledError],
    ['Throttling', 400, ThrottledError],
    ['InsufficientFreeAddressesInSubnet', 400, SubnetExhaustedError],
    ['AttachmentLimitExceeded', 400, LimitExceededError],
    ['PrivateIpAddressLimitExceeded', 400, LimitExceededError],
    ['InvalidNetworkInterfaceID.NotFound', 400, NotFoundError],
    ['InvalidSubnetID.NotFound', 400, NotFoundError],
    ['InvalidAttachmentID.NotFound', 400, NotFoundError],
    ['InvalidNetworkInterface.InUse', 400, InterfaceInUseError],
    ['UnauthorizedOperation', 403, UnauthorizedError],
    ['AuthFailure', 401, UnauthorizedError],
    ['InvalidParameterValue', 400, OtherProviderError],
    ['InternalError', 500, OtherProviderError],
  ];
  for (const [code, status, type] of cases) {
    test(`${code} -> ${type.name}`, () => {
      const err = toProviderError(sdkError(code, status), 'AssignPrivateIpAddresses');
      assert.ok(err instanceof type, `${code} mapped to ${err.constructor.name}`);
      assert.equal(err.cloudCode, code);
      assert.equal(err.requestId, 'req-1234');
      assert.match(err.message, /EC2 AssignPrivateIpAddresses failed/);
      assert.match(
        err.message,
        new RegExp(`${code.replace('.', '\\.')}: ${code.replace('.', '\\.')} happened`),
      );
      assert.match(err.message, /\(request id req-1234\)$/);
    });
  }

  test('HTTP 429 without a known code is throttling, and a Retry-After header is kept', () => {
    const err = toProviderError(
      sdkError('SlowDown', 429, { $response: { headers: { 'retry-after': '3' } } }),
      'X',
    );
    assert.ok(err instanceof ThrottledError);
    assert.equal(err.retryAfterMs, 3000);
  });

  test('request id from the x-amzn-requestid header when $metadata lacks it', () => {
    const e = sdkError('RequestLimitExceeded', 503, {
      $metadata: { httpStatusCode: 503 },
      $response: { headers: { 'x-amzn-requestid': 'hdr-42' } },
    });
    const err = toProviderError(e, 'X');
    assert.equal(err.requestId, 'hdr-42');
    assert.match(err.message, /\(request id hdr-42\)$/);
  });

  test('non-SDK values become Other', () => {
    const err = toProviderError('boom', 'X');
    assert.ok(err instanceof OtherProviderError);
    assert.match(err.message, /boom/);
    assert.equal(err.requestId, undefined);
  });
});

describe('classifyEc2Error', () => {
  test('throttling is retryable and throttled', () => {
    assert.deepEqual(classifyEc2Error(sdkError('RequestLimitExceeded', 503)), {
      retryable: true,
      throttled: true,
    });
  });
  test('5xx and transient server codes are retryable, not throttled', () => {
    assert.deepEqual(classifyEc2Error(sdkError('InternalError', 500)), { retryable: true, throttled: false });
    assert.deepEqual(classifyEc2Error(sdkError('Whatever', 502)), { retryable: true, throttled: false });
  });
  test('network resets are retryable', () => {
    const reset = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    assert.equal(ec2ErrorCode(reset), 'ECONNRESET');
    assert.deepEqual(classifyEc2Error(reset), { retryable: true, throttled: false });
  });
  test('client errors are final', () => {
    for (const code of [
      'InvalidParameterValue',
      'UnauthorizedOperation',
      'InvalidNetworkInterfaceID.NotFound',
    ]) {
      assert.deepEqual(classifyEc2Error(sdkError(code, 400)), { retryable: false, throttled: false }, code);
    }
  });
  test('retry-after as an HTTP date', () => {
    const at = new Date(Date.now() + 60_000).toUTCString();
    const c = classifyEc2Error(
      sdkError('RequestLimitExceeded', 503, { $response: { headers: { 'retry-after': at } } }),
    );
    assert.ok(
      c.retryAfterMs !== undefined && c.retryAfterMs > 55_000 && c.retryAfterMs <= 60_000,
      String(c.retryAfterMs),
    );
  });
});
