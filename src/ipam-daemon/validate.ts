// Validation of everything that arrives on the socket. Each validator returns the clean value or
// throws a ValidationError naming the field and the rule, which the server turns into a 400.

import type { AllocateRequest, AttachmentKey, GcRequest } from './api-types.ts';

export class ValidationError extends Error {
  override name = 'ValidationError';
}

// CNI spec: alphanumerics plus '_', '.', '-', not starting with a separator.
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function validContainerId(v: unknown): string {
  if (typeof v !== 'string' || !CONTAINER_ID.test(v)) {
    throw new ValidationError(
      'containerId must be 1-128 characters of letters, digits, "_", "." or "-", starting with a letter or digit',
    );
  }
  return v;
}

/** Linux interface names: 1-15 bytes (IFNAMSIZ - 1), not "." or "..", no "/", ":", whitespace or NUL. */
export function validIfName(v: unknown): string {
  if (
    typeof v !== 'string' ||
    v.length === 0 ||
    Buffer.byteLength(v) > 15 ||
    v === '.' ||
    v === '..' ||
    /[/:\s\0]/.test(v) ||
    // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
    /[\u0000-\u001f\u007f]/.test(v)
  ) {
    throw new ValidationError(
      'ifName must be 1-15 bytes, not "." or "..", without "/", ":", whitespace or NUL',
    );
  }
  return v;
}

export function validNetns(v: unknown): string {
  if (
    typeof v !== 'string' ||
    !v.startsWith('/') ||
    v.length > 4096 ||
    v.includes('\0') ||
    v.split('/').some((seg) => seg === '..' || seg === '.')
  ) {
    throw new ValidationError(
      'netns must be an absolute path without "." or ".." segments or NUL, at most 4096 bytes',
    );
  }
  return v;
}

export function validPodNamespace(v: unknown): string {
  if (typeof v !== 'string' || !DNS_LABEL.test(v)) {
    throw new ValidationError(
      'podNamespace must be a DNS-1123 label (lowercase letters, digits, "-", max 63)',
    );
  }
  return v;
}

export function validPodName(v: unknown): string {
  if (typeof v !== 'string' || !DNS_SUBDOMAIN.test(v)) {
    throw new ValidationError(
      'podName must be a DNS-1123 subdomain (lowercase letters, digits, "-", ".", max 253)',
    );
  }
  return v;
}

function asObject(body: unknown, what: string): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ValidationError(`${what} must be a JSON object`);
  }
  return body as Record<string, unknown>;
}

function rejectUnknown(o: Record<string, unknown>, allowed: readonly string[], what: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k))
      throw new ValidationError(`${what}: unknown field ${JSON.stringify(k.slice(0, 64))}`);
  }
}

export function parseAttachmentKey(body: unknown, what = 'request'): AttachmentKey {
  const o = asObject(body, what);
  return { containerId: validContainerId(o.containerId), ifName: validIfName(o.ifName) };
}

export function parseAllocateRequest(body: unknown): AllocateRequest {
  const o = asObject(body, 'allocate request');
  rejectUnknown(o, ['containerId', 'ifName', 'netns', 'podNamespace', 'podName'], 'allocate request');
  const req: AllocateRequest = {
    containerId: validContainerId(o.containerId),
    ifName: validIfName(o.ifName),
  };
  if (o.netns !== undefined) req.netns = validNetns(o.netns);
  if (o.podNamespace !== undefined) req.podNamespace = validPodNamespace(o.podNamespace);
  if (o.podName !== undefined) req.podName = validPodName(o.podName);
  return req;
}

export function parseReleaseRequest(body: unknown): AttachmentKey {
  const o = asObject(body, 'release request');
  rejectUnknown(o, ['containerId', 'ifName'], 'release request');
  return parseAttachmentKey(o, 'release request');
}

export function parseGcRequest(body: unknown): GcRequest {
  const o = asObject(body, 'gc request');
  rejectUnknown(o, ['validAttachments'], 'gc request');
  if (!Array.isArray(o.validAttachments)) throw new ValidationError('validAttachments must be an array');
  if (o.validAttachments.length > 100_000) throw new ValidationError('validAttachments is too long');
  return {
    validAttachments: o.validAttachments.map((a, i) => parseAttachmentKey(a, `validAttachments[${i}]`)),
  };
}
