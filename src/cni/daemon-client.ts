// The plugin's side of the socket API (src/ipam-daemon/api-types.ts): HTTP/1.1 + JSON over the
// daemon's Unix socket. Maps daemon answers to CNI errors: retryable ones (and a daemon that is not
// there yet) become code 11 "try again later".
import { request } from 'node:http';
import type {
  AllocateRequest,
  Allocation,
  ApiError,
  AttachmentKey,
  GcResponse,
  ReleaseResponse,
} from '../ipam-daemon/api-types.ts';
import { CniError, ErrorCode } from './spec.ts';

export interface DaemonClient {
  allocate(req: AllocateRequest): Promise<Allocation>;
  release(key: AttachmentKey): Promise<ReleaseResponse>;
  /** null when the daemon holds nothing for the key. */
  getAllocation(key: AttachmentKey): Promise<Allocation | null>;
  gc(valid: AttachmentKey[]): Promise<GcResponse>;
  /** null when ready, else the reason. */
  readiness(): Promise<string | null>;
}

interface HttpAnswer {
  status: number;
  body: unknown;
}

/** Connection-level failures: the daemon is not (yet) listening. */
export class DaemonUnreachableError extends CniError {
  constructor(socketPath: string, cause: Error) {
    super(
      ErrorCode.TRY_AGAIN_LATER,
      `vpc-ipamd is not reachable on ${socketPath}: ${cause.message}`,
      'is the vpc-ipam daemon running on this node?',
    );
    this.name = 'DaemonUnreachableError';
  }
}

export function createDaemonClient(socketPath: string, timeoutMs: number): DaemonClient {
  const call = (method: string, path: string, payload?: unknown): Promise<HttpAnswer> =>
    new Promise((resolve, reject) => {
      const body = payload === undefined ? undefined : JSON.stringify(payload);
      const req = request(
        {
          socketPath,
          method,
          path,
          headers: body
            ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }
            : {},
          timeout: timeoutMs,
          agent: false, // one request per connection: nothing keeps the short-lived plugin alive
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            let parsed: unknown = text;
            try {
              parsed = text === '' ? null : JSON.parse(text);
            } catch {
              // keep raw text for the error message
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => {
        req.destroy(
          new CniError(
            ErrorCode.TRY_AGAIN_LATER,
            `vpc-ipamd did not answer ${method} ${path} within ${timeoutMs} ms`,
          ),
        );
      });
      req.on('error', (e: NodeJS.ErrnoException) => {
        if (e instanceof CniError) reject(e);
        else if (['ENOENT', 'ECONNREFUSED', 'ECONNRESET', 'EACCES'].includes(e.code ?? '')) {
          reject(new DaemonUnreachableError(socketPath, e));
        } else reject(new CniError(ErrorCode.DAEMON_ERROR, `vpc-ipamd request failed: ${e.message}`));
      });
      req.end(body);
    });

  const fail = (what: string, a: HttpAnswer): never => {
    const err = a.body as Partial<ApiError> | null;
    const msg = typeof err?.message === 'string' ? err.message : JSON.stringify(a.body);
    const reason = typeof err?.reason === 'string' ? ` (${err.reason})` : '';
    const code =
      err?.retryable === true || a.status === 503 ? ErrorCode.TRY_AGAIN_LATER : ErrorCode.DAEMON_ERROR;
    throw new CniError(code, `${what}: vpc-ipamd answered ${a.status} ${err?.code ?? ''}${reason}: ${msg}`);
  };

  return {
    async allocate(req) {
      const a = await call('POST', '/v1/allocate', req);
      if (a.status !== 200) fail('allocate', a);
      return a.body as Allocation;
    },
    async release(key) {
      const a = await call('POST', '/v1/release', key);
      if (a.status !== 200) fail('release', a);
      return a.body as ReleaseResponse;
    },
    async getAllocation(key) {
      const q = new URLSearchParams({ containerId: key.containerId, ifName: key.ifName });
      const a = await call('GET', `/v1/allocation?${q}`);
      if (a.status === 404) return null;
      if (a.status !== 200) fail('get allocation', a);
      return a.body as Allocation;
    },
    async gc(validAttachments) {
      const a = await call('POST', '/v1/gc', { validAttachments });
      if (a.status !== 200) fail('gc', a);
      return a.body as GcResponse;
    },
    async readiness() {
      const a = await call('GET', '/readyz');
      if (a.status === 200) return null;
      const b = a.body as { reason?: unknown } | null;
      return typeof b?.reason === 'string' ? b.reason : `readyz answered ${a.status}`;
    },
  };
}
