// EC2 failures -> cloud-neutral ProviderErrors, and which of them are worth retrying.
// Pure: works on the shape of SDK v3 service exceptions (name = EC2 error code, $metadata with the
// HTTP status and request id) without importing SDK types, so it is testable with plain objects.

import {
  InterfaceInUseError,
  LimitExceededError,
  NotFoundError,
  OtherProviderError,
  type ProviderError,
  SubnetExhaustedError,
  ThrottledError,
  UnauthorizedError,
} from '../errors.ts';
import type { ErrorClassification } from '../rate-limit.ts';

interface Ec2ErrorShape {
  name?: string;
  code?: string;
  message?: string;
  $fault?: string;
  $metadata?: { httpStatusCode?: number; requestId?: string };
  $response?: { headers?: Record<string, string | undefined> };
}

const THROTTLE_CODES = new Set([
  'RequestLimitExceeded',
  'Throttling',
  'ThrottlingException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'EC2ThrottledException',
]);
const SUBNET_CODES = new Set(['InsufficientFreeAddressesInSubnet', 'InsufficientFreeAddresses']);
const LIMIT_CODES = new Set([
  'AttachmentLimitExceeded',
  'PrivateIpAddressLimitExceeded',
  'NetworkInterfaceLimitExceeded',
]);
const AUTH_CODES = new Set([
  'UnauthorizedOperation',
  'AuthFailure',
  'InvalidClientTokenId',
  'SignatureDoesNotMatch',
  'AccessDenied',
  'AccessDeniedException',
  'ExpiredToken',
]);
const TRANSIENT_SERVER_CODES = new Set([
  'InternalError',
  'InternalFailure',
  'ServiceUnavailable',
  'Unavailable',
]);
const NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENOTFOUND']);

function shape(err: unknown): Ec2ErrorShape {
  return typeof err === 'object' && err !== null ? (err as Ec2ErrorShape) : {};
}

/** The EC2 error code (e.g. RequestLimitExceeded), or a node network error code. */
export function ec2ErrorCode(err: unknown): string | undefined {
  const e = shape(err);
  if (e.code && NETWORK_CODES.has(e.code)) return e.code;
  return e.name && e.name !== 'Error' ? e.name : e.code;
}

function retryAfterMs(e: Ec2ErrorShape): number | undefined {
  const h = e.$response?.headers?.['retry-after'];
  if (h === undefined) return undefined;
  const seconds = Number(h);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const at = Date.parse(h);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

export function classifyEc2Error(err: unknown): ErrorClassification {
  const e = shape(err);
  const code = ec2ErrorCode(err);
  const status = e.$metadata?.httpStatusCode;
  const after = retryAfterMs(e);
  const withAfter = (c: ErrorClassification) => (after === undefined ? c : { ...c, retryAfterMs: after });
  if ((code && THROTTLE_CODES.has(code)) || status === 429)
    return withAfter({ retryable: true, throttled: true });
  if (code && NETWORK_CODES.has(code)) return { retryable: true, throttled: false };
  if (code === 'TimeoutError' || code === 'RequestTimeout') return { retryable: true, throttled: false };
  if ((code && TRANSIENT_SERVER_CODES.has(code)) || (status !== undefined && status >= 500)) {
    return withAfter({ retryable: true, throttled: false });
  }
  return { retryable: false, throttled: false };
}

export function toProviderError(err: unknown, api: string): ProviderError {
  const e = shape(err);
  const code = ec2ErrorCode(err) ?? 'Unknown';
  const details = {
    cloudCode: code,
    requestId: e.$metadata?.requestId ?? e.$response?.headers?.['x-amzn-requestid'],
    retryAfterMs: retryAfterMs(e),
    cause: err,
  };
  const message = `EC2 ${api} failed: ${code}: ${e.message ?? String(err)}`;
  if (THROTTLE_CODES.has(code) || e.$metadata?.httpStatusCode === 429)
    return new ThrottledError(message, details);
  if (SUBNET_CODES.has(code)) return new SubnetExhaustedError(message, details);
  if (LIMIT_CODES.has(code)) return new LimitExceededError(message, details);
  if (code === 'InvalidNetworkInterface.InUse') return new InterfaceInUseError(message, details);
  if (code.endsWith('.NotFound') || code.endsWith('NotFound')) return new NotFoundError(message, details);
  if (AUTH_CODES.has(code)) return new UnauthorizedError(message, details);
  return new OtherProviderError(message, details);
}
