// Maps ARM failures (RestError from @azure/core-rest-pipeline, or network errors) to the
// cloud-neutral ProviderError family, and tells the retry wrapper what is worth retrying.
// Works on the error's duck-typed shape so it is testable without the SDK.
import {
  InterfaceInUseError,
  isProviderError,
  LimitExceededError,
  NotFoundError,
  OtherProviderError,
  type ProviderError,
  type ProviderErrorDetails,
  SubnetExhaustedError,
  ThrottledError,
  UnauthorizedError,
} from '../errors.ts';
import type { ErrorClassification } from '../rate-limit.ts';

/** 412 on a NIC PUT: someone changed the NIC since we read it. Re-read and re-apply. */
export class EtagConflictError extends OtherProviderError {}

/** @azure/core-lro's messages for an operation that ended Failed or Canceled. */
const LRO_NOT_SUCCEEDED = /^The long-running operation has failed|^Operation was canceled/;

/** The SDK's error behind one of ours (the retry wrapper keeps it as the cause). */
function rootCause(err: unknown): unknown {
  return isProviderError(err) ? (err.cause ?? err) : err;
}

/**
 * True when a write may or may not have been applied: its long-running operation ended Failed or
 * Canceled, or it failed with a 5xx, 408, timeout or reset (after our retries). 409, 412, 429
 * and other 4xx are known "not applied".
 */
export function isUnknownOutcome(err: unknown): boolean {
  const e = shape(rootCause(err));
  if (e.statusCode === undefined && LRO_NOT_SUCCEEDED.test(e.message ?? '')) return true;
  const c = classifyArmError(rootCause(err));
  return c.retryable && !c.throttled && e.statusCode !== 409;
}

/** 409 AnotherOperationInProgress: an earlier operation on the resource is still running. */
export function isOperationInProgress(err: unknown): boolean {
  const e = shape(rootCause(err));
  return e.statusCode === 409 && /AnotherOperationInProgress/i.test(e.code ?? '');
}

interface ArmErrorShape {
  name?: string;
  message?: string;
  statusCode?: number;
  code?: string;
  response?: { headers?: { get(name: string): string | undefined } };
}

const SUBNET_FULL =
  /^(SubnetIsFull|PrivateIPAddressSpaceExhausted|SubnetDoesNotHaveEnoughCapacity|InsufficientSubnetSize)$/i;
const LIMIT = /(LimitReached|LimitExceeded|CountExceeded|QuotaExceeded|CountLimitReached)$/i;
/** Transport failures worth another try (the pipeline's codes and Node's). */
const NETWORK =
  /^(REQUEST_SEND_ERROR|ECONNRESET|ECONNREFUSED|ETIMEDOUT|EPIPE|EAI_AGAIN|ENOTFOUND|UND_ERR_SOCKET)$/;

function shape(err: unknown): ArmErrorShape {
  return typeof err === 'object' && err !== null ? (err as ArmErrorShape) : { message: String(err) };
}

function header(err: ArmErrorShape, name: string): string | undefined {
  try {
    return err.response?.headers?.get(name) ?? undefined;
  } catch {
    return undefined;
  }
}

/**
 * Server-advised wait in ms: retry-after-ms / x-ms-retry-after-ms (ms), else Retry-After
 * (seconds or an HTTP date, relative to `nowMs`).
 */
export function retryAfterMs(err: unknown, nowMs: number = Date.now()): number | undefined {
  const e = shape(err);
  for (const h of ['retry-after-ms', 'x-ms-retry-after-ms']) {
    const v = header(e, h);
    if (v !== undefined && /^\d+$/.test(v.trim())) return Number(v.trim());
  }
  const ra = header(e, 'retry-after')?.trim();
  if (!ra) return undefined;
  if (/^\d+(\.\d+)?$/.test(ra)) return Math.round(Number(ra) * 1000);
  const date = Date.parse(ra);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}

export function classifyArmError(err: unknown): ErrorClassification {
  const e = shape(err);
  const status = e.statusCode;
  const after = retryAfterMs(err);
  if (status === 429)
    return { retryable: true, throttled: true, ...(after !== undefined ? { retryAfterMs: after } : {}) };
  // 409 AnotherOperationInProgress: ARM is still applying an earlier change to the resource.
  if (status === 409 && /AnotherOperationInProgress|RetryableError/i.test(e.code ?? '')) {
    return { retryable: true, throttled: false, ...(after !== undefined ? { retryAfterMs: after } : {}) };
  }
  if (status === 408 || (status !== undefined && status >= 500)) {
    return { retryable: true, throttled: false, ...(after !== undefined ? { retryAfterMs: after } : {}) };
  }
  if (status === undefined && NETWORK.test(e.code ?? '')) return { retryable: true, throttled: false };
  return { retryable: false, throttled: false };
}

export function toProviderError(err: unknown, context?: { subnetId?: string }): ProviderError {
  const e = shape(err);
  const requestId = header(e, 'x-ms-request-id');
  const code = e.code;
  const details: ProviderErrorDetails = { cause: err };
  if (code) details.cloudCode = code;
  if (requestId) details.requestId = requestId;
  const msg = `Azure ARM${e.statusCode ? ` ${e.statusCode}` : ''}${code ? ` ${code}` : ''}: ${e.message ?? 'unknown error'}`;
  const status = e.statusCode;
  if (status === 429) {
    const after = retryAfterMs(err);
    return new ThrottledError(msg, { ...details, ...(after !== undefined ? { retryAfterMs: after } : {}) });
  }
  if (status === 412) return new EtagConflictError(msg, details);
  // @azure/identity failures: no managed identity, bad federated token, tenant mismatch...
  if (/^(CredentialUnavailableError|AuthenticationError|AggregateAuthenticationError)$/.test(e.name ?? '')) {
    return new UnauthorizedError(`Azure credential: ${e.message ?? 'no token'}`, details);
  }
  if (status === 401 || status === 403) return new UnauthorizedError(msg, details);
  if (status === 404) return new NotFoundError(msg, details);
  if (code && SUBNET_FULL.test(code)) {
    return new SubnetExhaustedError(msg, {
      ...details,
      ...(context?.subnetId ? { subnetId: context.subnetId } : {}),
    });
  }
  if (code && LIMIT.test(code)) return new LimitExceededError(msg, details);
  if (code === 'NicInUse') return new InterfaceInUseError(msg, details);
  return new OtherProviderError(msg, details);
}
