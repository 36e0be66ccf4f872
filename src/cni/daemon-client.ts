// The plugin's side of the socket API (src/ipam-daemon/api-types.ts): JSON in the socket's frames
// (HTTP/1.1 with a daemon older than them) over the daemon's Unix socket. Maps daemon answers to
// CNI errors: retryable ones (and a daemon that is not there yet) become code 11 "try again later".
import { connect } from 'node:net';
import type {
  AllocateRequest,
  Allocation,
  ApiError,
  AttachmentKey,
  GcResponse,
  ReleaseRequest,
  ReleaseResponse,
} from '../ipam-daemon/api-types.ts';
import { encodeFrame, FRAME_MAGIC, FrameReader, parseAnswer } from '../ipam-daemon/frame.ts';
import { writeDeferredRelease } from './deferred-release.ts';
import { CniError, ErrorCode } from './spec.ts';

export interface DaemonClient {
  allocate(req: AllocateRequest): Promise<Allocation>;
  /** `key.ip`: only while the key still holds that IP. */
  release(key: ReleaseRequest): Promise<ReleaseResponse>;
  /** null when the daemon holds nothing for the key. */
  getAllocation(key: AttachmentKey): Promise<Allocation | null>;
  /** `network`: the CNI network name; the daemon collects only that network's allocations. */
  gc(valid: AttachmentKey[], network?: string): Promise<GcResponse>;
  /** null when ready, else the reason. */
  readiness(): Promise<string | null>;
  /** Notes a release for the daemon to make once it runs again (a DEL while it is down). */
  deferRelease?(key: ReleaseRequest): Promise<void>;
}

export interface HttpAnswer {
  status: number;
  body: unknown;
}

/** One request to the daemon's API: over its socket (the plugin), or in-process (the daemon itself). */
export type Transport = (method: string, path: string, payload?: unknown) => Promise<HttpAnswer>;

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

/**
 * Parses one complete HTTP/1.1 response (the connection was closed by the server after it).
 * Handles Content-Length and chunked bodies. Pure; exported for tests.
 */
export function parseHttpResponse(raw: Buffer): { status: number; body: string } {
  const sep = raw.indexOf('\r\n\r\n');
  if (sep < 0) throw new Error('incomplete HTTP response from vpc-ipamd');
  const head = raw.subarray(0, sep).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '');
  if (!m) throw new Error(`bad HTTP status line from vpc-ipamd: ${JSON.stringify(head[0])}`);
  const headers = new Map<string, string>();
  for (const line of head.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
  }
  let body = raw.subarray(sep + 4);
  if (/chunked/i.test(headers.get('transfer-encoding') ?? '')) {
    const parts: Buffer[] = [];
    let at = 0;
    for (;;) {
      const eol = body.indexOf('\r\n', at);
      if (eol < 0) throw new Error('truncated chunked body from vpc-ipamd');
      const size = Number.parseInt(body.subarray(at, eol).toString('latin1'), 16);
      if (!Number.isFinite(size)) throw new Error('bad chunk size from vpc-ipamd');
      if (size === 0) break;
      parts.push(body.subarray(eol + 2, eol + 2 + size));
      at = eol + 2 + size + 2;
    }
    body = Buffer.concat(parts);
  } else if (headers.has('content-length')) {
    body = body.subarray(0, Number(headers.get('content-length')));
  }
  return { status: Number(m[1]), body: body.toString('utf8') };
}

export function createDaemonClient(socketPath: string, timeoutMs: number): DaemonClient {
  return {
    ...clientOver(socketTransport(socketPath, timeoutMs)),
    deferRelease: (key) => writeDeferredRelease(socketPath, key),
  };
}

/**
 * The socket's frames (src/ipam-daemon/frame.ts) over node:net, one connection per request: no
 * HTTP to build or parse (node:http's first request in a fresh process alone costs ~10 ms of lazy
 * initialisation). A daemon older than frames answers them with an HTTP 400 before reading
 * anything: the request is then sent again as HTTP/1.1.
 */
export function socketTransport(socketPath: string, timeoutMs: number): Transport {
  return async (method, path, payload) => {
    const body = payload === undefined ? '' : JSON.stringify(payload);
    const framed = await exchange(
      socketPath,
      timeoutMs,
      method,
      path,
      encodeFrame(`${method} ${path}`, body),
      readFrameAnswer,
    );
    if (framed !== HTTP_ONLY) return framed;
    const head =
      `${method} ${path} HTTP/1.1\r\nHost: vpc-ipamd\r\nConnection: close\r\n` +
      (payload === undefined
        ? '\r\n'
        : `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`);
    const answer = await exchange(socketPath, timeoutMs, method, path, head + body, readHttpAnswer);
    if (answer === HTTP_ONLY)
      throw new CniError(ErrorCode.DAEMON_ERROR, 'vpc-ipamd answered neither framing');
    return answer;
  };
}

/** A daemon that speaks only HTTP/1.1 refused a frame. */
const HTTP_ONLY = Symbol('http-only');
type Reader = (raw: Buffer, closed: boolean) => HttpAnswer | typeof HTTP_ONLY | null;

/** An answer frame once whole (null before); an HTTP answer instead means an older daemon. */
const readFrameAnswer: Reader = (raw, closed) => {
  if (raw.length > 0 && raw[0] !== FRAME_MAGIC) {
    if (raw.subarray(0, 5).toString('latin1') === 'HTTP/') return HTTP_ONLY;
    throw new Error(`not an answer frame from vpc-ipamd (first byte ${raw[0]})`);
  }
  const reader = new FrameReader(MAX_ANSWER_BYTES);
  reader.push(raw);
  const frame = reader.next();
  if (frame === null) {
    if (closed) throw new Error(`incomplete answer frame from vpc-ipamd (${raw.length} bytes)`);
    return null;
  }
  const a = parseAnswer(frame);
  return { status: a.status, body: parseBody(a.body) };
};

/** The whole HTTP answer, once the daemon has closed the connection (Connection: close). */
const readHttpAnswer: Reader = (raw, closed) => {
  if (!closed) return null;
  const res = parseHttpResponse(raw);
  return { status: res.status, body: parseBody(res.body) };
};

const MAX_ANSWER_BYTES = 16 << 20;

function parseBody(text: string): unknown {
  try {
    return text === '' ? null : JSON.parse(text);
  } catch {
    return text; // raw text for the error message
  }
}

/** Sends one request on a fresh connection and reads its answer. */
function exchange(
  socketPath: string,
  timeoutMs: number,
  method: string,
  path: string,
  request: Buffer | string,
  read: Reader,
): Promise<HttpAnswer | typeof HTTP_ONLY> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let raw: Buffer = Buffer.alloc(0);
    let settled = false;
    const settle = (closed: boolean): void => {
      try {
        const a = read(raw, closed);
        if (a === null) return;
        settled = true;
        sock.destroy();
        resolve(a);
      } catch (err) {
        settled = true;
        sock.destroy();
        reject(new CniError(ErrorCode.DAEMON_ERROR, (err as Error).message));
      }
    };
    sock.setTimeout(timeoutMs, () => {
      sock.destroy(
        new CniError(
          ErrorCode.TRY_AGAIN_LATER,
          `vpc-ipamd did not answer ${method} ${path} within ${timeoutMs} ms`,
        ),
      );
    });
    let failure: Error | null = null;
    sock.on('data', (c: Buffer) => {
      raw = raw.length === 0 ? c : Buffer.concat([raw, c]);
      if (!settled) settle(false);
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      failure ??= e;
    });
    // Settle on 'close' (unless the answer came whole before): a failed connect may also emit
    // 'end', and the error must win.
    sock.on('close', () => {
      if (settled) return;
      const e = failure as NodeJS.ErrnoException | null;
      if (e) {
        settled = true;
        if (e instanceof CniError) reject(e);
        else if (['ENOENT', 'ECONNREFUSED', 'ECONNRESET', 'EACCES'].includes(e.code ?? '')) {
          reject(new DaemonUnreachableError(socketPath, e));
        } else reject(new CniError(ErrorCode.DAEMON_ERROR, `vpc-ipamd request failed: ${e.message}`));
        return;
      }
      settle(true);
    });
    // write, not end: a half-closed request makes node:http servers drop a response still
    // pending (e.g. an allocation waiting for the pool to grow).
    sock.write(request);
  });
}

/** The API's answers as CNI outcomes: retryable errors become code 11 "try again later". */
export function clientOver(call: Transport): DaemonClient {
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
    async gc(validAttachments, network) {
      const a = await call('POST', '/v1/gc', { validAttachments, ...(network ? { network } : {}) });
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
