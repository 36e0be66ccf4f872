// Typed, cloud-neutral provider errors. Each carries the cloud's request id (when it gave one)
// in its message so an operator can quote it to the cloud's support.

export type ProviderErrorCode =
  | 'THROTTLED'
  | 'SUBNET_EXHAUSTED'
  | 'LIMIT_EXCEEDED'
  | 'NOT_FOUND'
  | 'UNAUTHORIZED'
  /** The interface is attached and the caller asked not to detach it (deleteInterface onlyIfDetached). */
  | 'IN_USE'
  | 'OTHER';

export interface ProviderErrorDetails {
  /** The cloud's own error code, e.g. RequestLimitExceeded or SubnetIsFull. */
  cloudCode?: string;
  requestId?: string;
  /** Server-advised wait before retrying (Retry-After), when known. */
  retryAfterMs?: number;
  cause?: unknown;
}

export class ProviderError extends Error {
  readonly code: ProviderErrorCode;
  readonly cloudCode: string | undefined;
  readonly requestId: string | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(code: ProviderErrorCode, message: string, details: ProviderErrorDetails = {}) {
    const suffix = details.requestId ? ` (request id ${details.requestId})` : '';
    super(`${message}${suffix}`, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = code;
    this.cloudCode = details.cloudCode;
    this.requestId = details.requestId;
    this.retryAfterMs = details.retryAfterMs;
  }
}

export class ThrottledError extends ProviderError {
  constructor(message: string, details: ProviderErrorDetails = {}) {
    super('THROTTLED', message, details);
  }
}

export class SubnetExhaustedError extends ProviderError {
  readonly subnetId: string | undefined;
  constructor(message: string, details: ProviderErrorDetails & { subnetId?: string } = {}) {
    super('SUBNET_EXHAUSTED', message, details);
    this.subnetId = details.subnetId;
  }
}

export class LimitExceededError extends ProviderError {
  constructor(message: string, details: ProviderErrorDetails = {}) {
    super('LIMIT_EXCEEDED', message, details);
  }
}

export class NotFoundError extends ProviderError {
  constructor(message: string, details: ProviderErrorDetails = {}) {
    super('NOT_FOUND', message, details);
  }
}

export class UnauthorizedError extends ProviderError {
  constructor(message: string, details: ProviderErrorDetails = {}) {
    super('UNAUTHORIZED', message, details);
  }
}

/** The interface is attached (in use); nothing was changed. The janitor treats it as "skip". */
export class InterfaceInUseError extends ProviderError {
  constructor(message: string, details: ProviderErrorDetails = {}) {
    super('IN_USE', message, details);
  }
}

export class OtherProviderError extends ProviderError {
  constructor(message: string, details: ProviderErrorDetails = {}) {
    super('OTHER', message, details);
  }
}

export function isProviderError(err: unknown): err is ProviderError {
  return err instanceof ProviderError;
}
