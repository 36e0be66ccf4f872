import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  classifyArmError,
  EtagConflictError,
  isOperationInProgress,
  isUnknownOutcome,
  retryAfterMs,
  toProviderError,
} from '../../../../src/providers/azure/arm-errors.ts';

const restError = (statusCode: number | undefined, code?: string, headers: Record<string, string> = {}) => ({
  name: 'RestError',
  message: `status ${statusCode}`,
  statusCode,
  code,
  response: { headers: { get: (n: string) => headers[n.toLowerCase()] } },
});

describe('classifyArmError', () => {
  test('429 is throttled and retryable with the server wait', () => {
    assert.deepEqual(
      classifyArmError(restError(429, 'SubscriptionRequestsThrottled', { 'retry-after': '7' })),
      {
        retryable: true,
        throttled: true,
        retryAfterMs: 7000,
      },
    );
  });
  test('5xx, 408, transport errors and 409 AnotherOperationInProgress are retryable; 4xx are not', () => {
    assert.equal(classifyArmError(restError(503)).retryable, true);
    assert.equal(classifyArmError(restError(408)).retryable, true);
    assert.equal(classifyArmError(restError(undefined, 'REQUEST_SEND_ERROR')).retryable, true);
    assert.equal(classifyArmError(restError(409, 'AnotherOperationInProgress')).retryable, true);
    for (const s of [400, 401, 403, 404, 409, 412])
      assert.equal(classifyArmError(restError(s)).retryable, false, String(s));
    assert.equal(classifyArmError(new Error('boom')).retryable, false);
  });
});

describe('retryAfterMs', () => {
  test('ms headers win, then seconds, then HTTP dates', () => {
    assert.equal(
      retryAfterMs(restError(429, undefined, { 'retry-after-ms': '150', 'retry-after': '9' })),
      150,
    );
    assert.equal(retryAfterMs(restError(429, undefined, { 'x-ms-retry-after-ms': '20' })), 20);
    assert.equal(retryAfterMs(restError(429, undefined, { 'retry-after': '2.5' })), 2500);
    const now = Date.parse('2030-01-01T00:00:00Z');
    assert.equal(
      retryAfterMs(restError(429, undefined, { 'retry-after': 'Tue, 01 Jan 2030 00:00:03 GMT' }), now),
      3000,
    );
    assert.equal(retryAfterMs(restError(429, undefined, { 'retry-after': 'soon' })), undefined);
    assert.equal(retryAfterMs(restError(429)), undefined);
  });
});

describe('toProviderError', () => {
  const cases: [ReturnType<typeof restError>, string][] = [
    [restError(429, 'SubscriptionRequestsThrottled', { 'retry-after': '3' }), 'THROTTLED'],
    [restError(400, 'SubnetIsFull'), 'SUBNET_EXHAUSTED'],
    [restError(400, 'PrivateIPAddressSpaceExhausted'), 'SUBNET_EXHAUSTED'],
    [restError(400, 'NetworkInterfaceIpConfigurationsCountLimitReached'), 'LIMIT_EXCEEDED'],
    [restError(400, 'NetworkInterfaceCountExceeded'), 'LIMIT_EXCEEDED'],
    [restError(400, 'QuotaExceeded'), 'LIMIT_EXCEEDED'],
    [restError(404, 'ResourceNotFound'), 'NOT_FOUND'],
    [restError(401, 'InvalidAuthenticationToken'), 'UNAUTHORIZED'],
    [restError(403, 'AuthorizationFailed'), 'UNAUTHORIZED'],
    [restError(400, 'PrivateIPAddressInUse'), 'OTHER'],
    [restError(400, 'NicInUse'), 'IN_USE'],
    [restError(500), 'OTHER'],
  ];
  for (const [err, code] of cases) {
    test(`${err.statusCode} ${err.code ?? ''} -> ${code}`, () => {
      const p = toProviderError(err);
      assert.equal(p.code, code);
      assert.equal(p.cloudCode, err.code);
      assert.equal(p.cause, err);
    });
  }
  test('credential failures are Unauthorized', () => {
    const e = Object.assign(new Error('ManagedIdentityCredential: no endpoint'), {
      name: 'CredentialUnavailableError',
    });
    assert.equal(toProviderError(e).code, 'UNAUTHORIZED');
    assert.equal(classifyArmError(e).retryable, false);
  });
  test('412 is an EtagConflictError; request id and retry-after carried; subnet id when known', () => {
    assert.ok(toProviderError(restError(412, 'PreconditionFailed')) instanceof EtagConflictError);
    const t = toProviderError(restError(429, 'X', { 'retry-after': '4', 'x-ms-request-id': 'req-1' }));
    assert.equal(t.retryAfterMs, 4000);
    assert.equal(t.requestId, 'req-1');
    assert.match(t.message, /request id req-1/);
    const s = toProviderError(restError(400, 'SubnetIsFull'), { subnetId: '/subs/x' }) as {
      subnetId?: string;
    };
    assert.equal(s.subnetId, '/subs/x');
  });
});

describe('isUnknownOutcome / isOperationInProgress', () => {
  test('operations ended Failed or Canceled, 5xx, 408 and transport errors are unknown outcomes', () => {
    assert.equal(
      isUnknownOutcome(new Error('The long-running operation has failed. InternalServerError. x')),
      true,
    );
    assert.equal(isUnknownOutcome(new Error('Operation was canceled')), true);
    assert.equal(isUnknownOutcome(restError(500)), true);
    assert.equal(isUnknownOutcome(restError(408)), true);
    assert.equal(isUnknownOutcome(restError(undefined, 'ECONNRESET')), true);
    // wrapped by the retry caller: the SDK error is the cause
    assert.equal(isUnknownOutcome(toProviderError(restError(503))), true);
  });
  test('429, 409, 412 and other 4xx are known not applied', () => {
    for (const s of [400, 403, 404, 409, 412, 429])
      assert.equal(isUnknownOutcome(restError(s)), false, String(s));
    assert.equal(isUnknownOutcome(restError(409, 'AnotherOperationInProgress')), false);
  });
  test('409 AnotherOperationInProgress, bare or wrapped', () => {
    assert.equal(isOperationInProgress(restError(409, 'AnotherOperationInProgress')), true);
    assert.equal(isOperationInProgress(toProviderError(restError(409, 'AnotherOperationInProgress'))), true);
    assert.equal(isOperationInProgress(restError(409, 'Conflict')), false);
  });
});
