// Validation of everything that arrives on the socket. Each validator returns the clean value or
// throws a ValidationError naming the field and the rule, which the server turns into a 400.

import { MAX_CONTAINER_ID, validateContainerId, validateIpv4 } from '../netutils/validate.ts';
import type { AllocateRequest, AttachmentKey, GcRequest, ReleaseRequest } from './api-types.ts';

export class ValidationError extends Error {
  override name = 'ValidationError';
}

// CNI network names: alphanumerics plus '_', '.', '-', not starting with a separator.
const NETWORK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$/;
// Kubernetes uids are UUIDs; accept any short id of hex digits and dashes.
const POD_UID = /^[0-9A-Fa-f][0-9A-Fa-f-]{0,63}$/;
/** Most attachments one GC may list (a dense node has a few hundred). */
export const MAX_GC_ATTACHMENTS = 50_000;
/**
 * A GC lists every attachment the runtime has, ~100 bytes each: 1,000+ attachments do not fit the
 * 16 KiB of other requests. This fits MAX_GC_ATTACHMENTS with 64-character container ids, on
 * /v1/gc and, inside the forwarded network config, on /v1/cni (and the shim's stdin).
 */
export const MAX_GC_BODY_BYTES = 8 * 1024 * 1024;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function validContainerId(v: unknown): string {
  if (typeof v === 'string') {
    try {
      return validateContainerId(v);
    } catch {
      // the message below names the rule
    }
  }
  throw new ValidationError(
    `containerId must be 1-${MAX_CONTAINER_ID} characters of letters, digits, "_", "." or "-", starting with a letter or digit`,
  );
}

export function validPodUid(v: unknown): string {
  if (typeof v !== 'string' || !POD_UID.test(v)) {
    throw new ValidationError('podUid must be 1-64 hex digits and "-" (the pod\'s metadata.uid)');
  }
  return v;
}

export function validNetworkName(v: unknown): string {
  if (typeof v !== 'string' || !NETWORK_NAME.test(v)) {
    throw new ValidationError(
      'network must be 1-253 characters of letters, digits, "_", "." or "-", starting with a letter or digit (the CNI network name)',
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
  rejectUnknown(
    o,
    ['containerId', 'ifName', 'netns', 'podNamespace', 'podName', 'podUid', 'network'],
    'allocate request',
  );
  // Every allocation names its pod, so the pod watcher can collect it when the pod goes.
  if (o.podNamespace === undefined || o.podName === undefined) {
    throw new ValidationError(
      'podNamespace and podName are required (the pod identity the runtime gives in CNI_ARGS K8S_POD_NAMESPACE / K8S_POD_NAME)',
    );
  }
  const req: AllocateRequest = {
    containerId: validContainerId(o.containerId),
    ifName: validIfName(o.ifName),
    podNamespace: validPodNamespace(o.podNamespace),
    podName: validPodName(o.podName),
  };
  if (o.netns !== undefined) req.netns = validNetns(o.netns);
  if (o.podUid !== undefined) req.podUid = validPodUid(o.podUid);
  if (o.network !== undefined) req.network = validNetworkName(o.network);
  return req;
}

export function parseReleaseRequest(body: unknown): ReleaseRequest {
  const o = asObject(body, 'release request');
  rejectUnknown(o, ['containerId', 'ifName', 'ip'], 'release request');
  const key: ReleaseRequest = parseAttachmentKey(o, 'release request');
  if (o.ip !== undefined) key.ip = validIp(o.ip);
  return key;
}

function validIp(v: unknown): string {
  if (typeof v === 'string') {
    try {
      return validateIpv4(v);
    } catch {
      // the message below names the rule
    }
  }
  throw new ValidationError('ip must be a dotted IPv4 address');
}

export function parseGcRequest(body: unknown): GcRequest {
  const o = asObject(body, 'gc request');
  rejectUnknown(o, ['validAttachments', 'network'], 'gc request');
  if (!Array.isArray(o.validAttachments)) throw new ValidationError('validAttachments must be an array');
  if (o.validAttachments.length > MAX_GC_ATTACHMENTS) {
    throw new ValidationError(`validAttachments lists over ${MAX_GC_ATTACHMENTS} attachments`);
  }
  const req: GcRequest = {
    validAttachments: o.validAttachments.map((a, i) => parseAttachmentKey(a, `validAttachments[${i}]`)),
  };
  if (o.network !== undefined) req.network = validNetworkName(o.network);
  return req;
}
