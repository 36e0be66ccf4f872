// The socket API (contract in api-types.ts) on a root-only Unix socket, in two framings sniffed
// per connection: HTTP/1.1 (node:http: curl, the CLI) and length-prefixed frames (frame.ts: the CNI
// shim and plugin, no HTTP parsing per request). Every request is validated; nothing a client sends
// can crash the daemon. Slow clients are cut off, bodies are capped, and each answer is sent only
// after the checkpoint holds it.

import { chmod, lstat, mkdir, stat, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from '../lib/log.ts';
import type { ApiError, ApiErrorCode } from './api-types.ts';
import {
  MAX_CNI_BODY_BYTES,
  parseAppliedReport,
  parseCniRequest,
  runForShim,
  ShimSessions,
} from './cni-host.ts';
import { type Daemon, NoIpError, NotReadyError } from './daemon.ts';
import {
  encodeFrame,
  FRAME_MAGIC,
  type Frame,
  type FrameError,
  FrameReader,
  MAX_FRAME_HEAD_BYTES,
} from './frame.ts';
import {
  MAX_GC_BODY_BYTES,
  parseAllocateRequest,
  parseAttachmentKey,
  parseGcRequest,
  parseReleaseRequest,
  ValidationError,
} from './validate.ts';

export const MAX_BODY_BYTES = 16 * 1024;

export interface ServerOptions {
  socketPath: string;
  daemon: Daemon;
  logger: Logger;
  /** Whole request (headers + body) must arrive within this. */
  requestTimeoutMs?: number;
  headersTimeoutMs?: number;
  /** How often node checks the timeouts above. */
  connectionsCheckingIntervalMs?: number;
  /** Observes every answered request (metrics). */
  onRequest?: (route: string, status: number, durationMs: number) => void;
  /** Open connections at most; more are closed at once (default MAX_SOCKET_CONNECTIONS). */
  maxConnections?: number;
  /** How long an ADD waits for the shim's wiring report (default APPLY_REPORT_TIMEOUT_MS). */
  applyReportTimeoutMs?: number;
}

/** Far above a node's concurrent CNI commands; bounds what one local client can hold open. */
export const MAX_SOCKET_CONNECTIONS = 512;

export class HttpError extends Error {
  readonly status: number;
  readonly code: ApiErrorCode;
  readonly headers: Record<string, string>;
  constructor(status: number, code: ApiErrorCode, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

/** A route: `body` reads the request's JSON body (capped at maxBytes, default MAX_BODY_BYTES). */
export type Handler = (body: (maxBytes?: number) => Promise<unknown>, url: URL) => Promise<unknown>;
export type Routes = Record<string, Partial<Record<'GET' | 'POST', Handler>>>;

/**
 * The API's routes. The socket server serves them; the daemon also calls them in-process when it
 * runs a CNI command for the shim (cni-host.ts), so both paths share one validation and one set
 * of answers.
 */
export function apiRoutes(daemon: Daemon, applyReportTimeoutMs?: number): Routes {
  const shims = new ShimSessions(applyReportTimeoutMs, daemon.veths);
  const routes: Routes = {
    '/v1/allocate': {
      POST: async (body) => daemon.allocate(parseAllocateRequest(await body())),
    },
    '/v1/release': {
      POST: async (body) => daemon.release(parseReleaseRequest(await body())),
    },
    '/v1/allocation': {
      GET: async (_body, url) => {
        const key = parseAttachmentKey({
          containerId: url.searchParams.get('containerId') ?? undefined,
          ifName: url.searchParams.get('ifName') ?? undefined,
        });
        const a = daemon.get(key);
        if (!a) throw new HttpError(404, 'NOT_FOUND', `no allocation for ${key.containerId}/${key.ifName}`);
        return a;
      },
    },
    '/v1/allocations': { GET: async () => ({ allocations: daemon.list() }) },
    // A CNI command forwarded by the shim: always 200 with the plugin's stdout and exit code, or
    // (a shim that applies plans) the wiring to apply, reported on /v1/cni/applied.
    '/v1/cni': {
      POST: async (body) =>
        runForShim(routes, toApiError, parseCniRequest(await body(MAX_CNI_BODY_BYTES)), shims),
    },
    '/v1/cni/applied': {
      POST: async (body) => shims.report(parseAppliedReport(await body())),
    },
    '/v1/gc': {
      POST: async (body) => {
        const gc = parseGcRequest(await body(MAX_GC_BODY_BYTES));
        return daemon.gc(gc.validAttachments, gc.network);
      },
    },
    '/v1/pool': { GET: async () => daemon.status() },
    '/healthz': { GET: async () => ({ ok: true }) },
    '/readyz': {
      GET: async () => {
        if (!daemon.ready) throw new HttpError(503, 'NOT_READY', daemon.notReadyReason);
        return { ok: true };
      },
    },
  };
  return routes;
}

export interface SocketServer {
  /** Both transports' connections: `closeAllConnections()` drops them, answered or not. */
  server: { closeAllConnections(): void };
  /** Stop accepting connections; resolves when every open request has been answered. */
  close(): Promise<void>;
}

/** What a route answered: status, JSON body, extra headers (HTTP only). */
interface Answer {
  route: string;
  status: number;
  body: unknown;
  headers: Record<string, string>;
}

/** Route lookup, method check, handler, error mapping: one path for both transports. */
async function dispatch(
  routes: Routes,
  log: Logger,
  method: string,
  raw: string,
  body: (maxBytes?: number) => Promise<unknown>,
): Promise<Answer> {
  let route = 'unknown';
  try {
    // Most requests carry no query string: skip the URL parser for them.
    const url = routes[raw] ? plainUrl(raw) : new URL(raw, 'http://ipamd');
    const entry = routes[url.pathname];
    if (!entry) throw new HttpError(404, 'NOT_FOUND', `no such endpoint ${url.pathname.slice(0, 100)}`);
    route = url.pathname;
    const m = method === 'HEAD' ? 'GET' : method;
    const handler = m === 'GET' || m === 'POST' ? entry[m] : undefined;
    if (!handler) {
      const allow = Object.keys(entry).join(', ');
      throw new HttpError(405, 'METHOD_NOT_ALLOWED', `${method.slice(0, 20)} not allowed; use ${allow}`, {
        Allow: allow,
      });
    }
    return { route, status: 200, body: await handler(body, url), headers: {} };
  } catch (err) {
    const e = toApiError(err);
    if (e.status >= 500 && e.body.code === 'INTERNAL') log.error({ err, route }, 'request failed');
    return { route, status: e.status, body: e.body, headers: e.headers };
  }
}

/** A frame's payload is at most the largest body a route takes, plus its head line. */
const MAX_FRAME_PAYLOAD =
  Math.max(MAX_BODY_BYTES, MAX_CNI_BODY_BYTES, MAX_GC_BODY_BYTES) + MAX_FRAME_HEAD_BYTES + 1;

export async function startSocketServer(opts: ServerOptions): Promise<SocketServer> {
  const { daemon, logger: log } = opts;
  await prepareSocketPath(opts.socketPath);

  const routes = apiRoutes(daemon, opts.applyReportTimeoutMs);
  const requestTimeoutMs = opts.requestTimeoutMs ?? 10_000;
  const headersTimeoutMs = opts.headersTimeoutMs ?? 5_000;
  let closing = false;

  const server = createServer(
    {
      requestTimeout: requestTimeoutMs,
      headersTimeout: headersTimeoutMs,
      connectionsCheckingInterval: opts.connectionsCheckingIntervalMs ?? 1_000,
      keepAliveTimeout: 5_000,
      maxHeaderSize: 8 * 1024,
    },
    (req, res) => {
      const started = performance.now();
      dispatch(routes, log, req.method ?? '', req.url ?? '/', (maxBytes) => readJson(req, maxBytes))
        .then((a) => {
          send(res, a.status, a.body, closing ? { ...a.headers, Connection: 'close' } : a.headers);
          opts.onRequest?.(a.route, a.status, performance.now() - started);
        })
        .catch((err) => {
          log.error({ err }, 'unexpected error answering a request');
          if (!res.headersSent)
            send(res, 500, { code: 'INTERNAL', message: 'internal error', retryable: true }, {});
          else res.destroy();
        });
    },
  );
  server.on('clientError', (err, socket) => {
    // Malformed HTTP, oversized headers, timeouts: answer if we can, never throw.
    if (socket.writable && !(err as NodeJS.ErrnoException).code?.startsWith('ECONN')) {
      const code = (err as NodeJS.ErrnoException).code;
      const status = code === 'HPE_HEADER_OVERFLOW' ? 431 : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      socket.end(
        `HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`,
      );
    } else {
      socket.destroy();
    }
  });

  const frames = new Set<FrameConnection>();
  const frameOpts: FrameOptions = {
    routes,
    log,
    onRequest: opts.onRequest,
    idleTimeoutMs: headersTimeoutMs,
    requestTimeoutMs,
    closing: () => closing,
  };
  // One listener for both transports: the first byte of a connection tells a frame client
  // (FRAME_MAGIC) from an HTTP one (curl, the CLI, older plugins). node:http keeps the listening
  // socket (its connection cap, timeouts and close stay as they are); its own connection handler
  // runs only for HTTP connections, after the sniff.
  const httpConnection = server.listeners('connection');
  if (httpConnection.length !== 1) throw new Error('node:http registered an unexpected connection handler');
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    const onError = () => socket.destroy();
    const onSilent = () => socket.destroy();
    socket.on('error', onError);
    socket.on('timeout', onSilent);
    // The listener allows half-open connections (node:http does): one that ends before its first
    // byte is closed here.
    const onEnd = () => socket.destroy();
    socket.once('end', onEnd);
    socket.setTimeout(headersTimeoutMs);
    socket.once('data', (first: Buffer) => {
      socket.off('timeout', onSilent);
      socket.off('end', onEnd);
      if (first[0] === FRAME_MAGIC) {
        const c = new FrameConnection(socket, frameOpts, () => frames.delete(c));
        frames.add(c);
        c.onData(first);
        return;
      }
      socket.off('error', onError);
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(first);
      httpConnection[0]?.call(server, socket);
      socket.resume();
    });
  });
  server.maxConnections = opts.maxConnections ?? MAX_SOCKET_CONNECTIONS;
  server.on('drop', () =>
    log.warn({ max: server.maxConnections }, 'socket connection refused: too many open'),
  );

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  await chmod(opts.socketPath, 0o600);
  server.on('error', (err) => log.error({ err }, 'socket server error'));
  log.info({ socket: opts.socketPath }, 'socket API listening');

  return {
    server: {
      closeAllConnections: () => {
        server.closeAllConnections();
        for (const c of frames) c.destroy();
      },
    },
    close: () =>
      new Promise<void>((resolve) => {
        closing = true;
        // Resolves once every connection is gone: idle ones now, busy ones after their answer.
        server.close(() => resolve());
        server.closeIdleConnections();
        for (const c of frames) c.closeIfIdle();
      }),
  };
}

interface FrameOptions {
  routes: Routes;
  log: Logger;
  onRequest: ServerOptions['onRequest'];
  /** Silence allowed between frames and inside one. */
  idleTimeoutMs: number;
  /** A frame must be whole within this from its first byte. */
  requestTimeoutMs: number;
  closing: () => boolean;
}

/** Bytes a frame client may send ahead of the request being answered before its socket is paused. */
const PIPELINE_BYTES = 64 * 1024;

/**
 * A frame client's connection: its requests are answered one at a time, in order. Bytes that are not a frame,
 * or a frame over the size cap, get one error answer and the connection is closed.
 */
class FrameConnection {
  private readonly socket: Socket;
  private readonly opts: FrameOptions;
  private readonly reader = new FrameReader(MAX_FRAME_PAYLOAD);
  private busy = false;
  private paused = false;
  private ended = false;
  private frameStarted = 0;
  constructor(socket: Socket, opts: FrameOptions, onClose: () => void) {
    this.socket = socket;
    this.opts = opts;
    socket.on('timeout', () => {
      // A request in flight is bounded by the daemon's own waits, not by the client's silence.
      if (!this.busy) socket.destroy();
    });
    socket.setTimeout(opts.idleTimeoutMs);
    socket.on('data', (d: Buffer) => this.onData(d));
    // A client may half-close after its last request: it still gets the answer, then the end.
    socket.once('end', () => {
      this.ended = true;
      this.finishIfEnded();
    });
    socket.once('close', onClose);
  }

  onData(chunk: Buffer): void {
    this.reader.push(chunk);
    if (this.busy) {
      if (this.reader.pending > PIPELINE_BYTES) this.pause();
      return;
    }
    this.pump();
  }

  private pause(): void {
    this.paused = true;
    this.socket.pause();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** The client sent its last byte: end once answered; a frame it left unfinished never will be. */
  private finishIfEnded(): void {
    if (this.busy) return;
    if (this.reader.pending > 0) this.socket.destroy();
    else this.socket.end();
  }

  closeIfIdle(): void {
    if (!this.busy && this.reader.pending === 0) this.socket.end();
  }

  private pump(): void {
    if (this.busy || this.socket.destroyed) return;
    let frame: Frame | null;
    try {
      frame = this.reader.next();
    } catch (err) {
      const e = err as FrameError;
      const code = e.status === 413 ? 'PAYLOAD_TOO_LARGE' : 'BAD_REQUEST';
      this.socket.end(answerFrame(e.status, { code, message: e.message, retryable: false }));
      this.socket.destroySoon();
      return;
    }
    if (frame === null) {
      if (this.reader.pending === 0) this.frameStarted = 0;
      else if (this.frameStarted === 0) this.frameStarted = performance.now();
      else if (performance.now() - this.frameStarted > this.opts.requestTimeoutMs) this.socket.destroy();
      return;
    }
    this.frameStarted = 0;
    this.busy = true;
    // Frames sent ahead wait in the reader; past one frame's worth the socket is not read until
    // the request in flight is answered (a client cannot queue up unbounded work).
    if (this.reader.pending > PIPELINE_BYTES) this.pause();
    void this.run(frame);
  }

  private async run(frame: Frame): Promise<void> {
    const started = performance.now();
    const sp = frame.head.indexOf(' ');
    const method = sp < 0 ? frame.head : frame.head.slice(0, sp);
    const path = sp < 0 ? '' : frame.head.slice(sp + 1);
    const a = path.startsWith('/')
      ? await dispatch(this.opts.routes, this.opts.log, method, path, (maxBytes) =>
          frameJson(frame.body, maxBytes),
        )
      : ({
          route: 'unknown',
          status: 400,
          body: { code: 'BAD_REQUEST', message: 'frame head is not "<METHOD> /<path>"', retryable: false },
          headers: {},
        } satisfies Answer);
    if (this.socket.destroyed) return;
    this.socket.write(answerFrame(a.status, a.body));
    this.opts.onRequest?.(a.route, a.status, performance.now() - started);
    this.busy = false;
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    this.pump();
    if (this.ended) this.finishIfEnded();
    else if (this.opts.closing()) this.closeIfIdle();
  }
}

function answerFrame(status: number, body: unknown): Buffer {
  return encodeFrame(String(status), JSON.stringify(body));
}

/** A frame's body as JSON, capped like an HTTP body (the whole frame was capped on its header). */
function frameJson(body: Buffer, maxBytes = MAX_BODY_BYTES): Promise<unknown> {
  if (body.length > maxBytes) {
    return Promise.reject(new HttpError(413, 'PAYLOAD_TOO_LARGE', `body over ${maxBytes} bytes`));
  }
  try {
    return Promise.resolve(parseJsonBody(body.toString('utf8')));
  } catch (err) {
    return Promise.reject(err);
  }
}

/** Root-only directory; refuse anything at the path that is not a stale socket of ours. */
async function prepareSocketPath(path: string): Promise<void> {
  const dir = dirname(path);
  let created = false;
  try {
    await stat(dir);
  } catch {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    created = true;
  }
  const ds = await stat(dir);
  if (!ds.isDirectory()) throw new Error(`socket directory ${dir} is not a directory`);
  if (created) await chmod(dir, 0o700);
  else if ((ds.mode & 0o022) !== 0) {
    throw new Error(
      `socket directory ${dir} is writable by group or others (mode ${(ds.mode & 0o777).toString(8)}); use a root-only directory`,
    );
  }
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`${path} exists and is not a socket; refusing to replace it`);
  if (await socketAnswers(path)) throw new Error(`${path} is in use by another running daemon`);
  await unlink(path);
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function readJson(req: IncomingMessage, maxBytes = MAX_BODY_BYTES): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') {
    throw new HttpError(415, 'UNSUPPORTED_MEDIA_TYPE', 'send Content-Type: application/json');
  }
  const declared = Number(req.headers['content-length'] ?? '0');
  if (declared > maxBytes) {
    throw new HttpError(413, 'PAYLOAD_TOO_LARGE', `body over ${maxBytes} bytes`, {
      Connection: 'close',
    });
  }
  // Events rather than an async iterator: this runs on every request.
  const text = await new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const fail = (err: () => Error) => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      req.resume();
      reject(err());
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        fail(
          () =>
            new HttpError(413, 'PAYLOAD_TOO_LARGE', `body over ${maxBytes} bytes`, {
              Connection: 'close',
            }),
        );
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => {
      if (settled) return;
      settled = true;
      resolve(chunks.length === 1 ? String(chunks[0]) : Buffer.concat(chunks).toString('utf8'));
    });
    req.once('error', (err) => fail(() => err));
    // Closed before the end (a client gone mid-body). The error is built only then: this runs for
    // every request, and an Error's stack trace is not free.
    req.once('close', () => fail(() => new Error('request aborted')));
  });
  return parseJsonBody(text);
}

/** A request body's JSON, or the 400 both framings answer. */
function parseJsonBody(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, 'BAD_REQUEST', 'body is not valid JSON');
  }
}

/** What the handlers use of a URL, for a path that is exactly a route (no query string). */
function plainUrl(path: string): URL {
  return { pathname: path, searchParams: EMPTY_PARAMS } as unknown as URL;
}
const EMPTY_PARAMS = new URLSearchParams();

export function toApiError(err: unknown): {
  status: number;
  headers: Record<string, string>;
  body: ApiError;
} {
  if (err instanceof HttpError) {
    return {
      status: err.status,
      headers: err.headers,
      body: { code: err.code, message: err.message, retryable: err.status === 503 },
    };
  }
  if (err instanceof ValidationError) {
    return {
      status: 400,
      headers: {},
      body: { code: 'BAD_REQUEST', message: err.message, retryable: false },
    };
  }
  if (err instanceof NoIpError) {
    return {
      status: 503,
      headers: { 'Retry-After': '2' },
      body: { code: 'NO_IP', message: err.message, retryable: true, reason: err.reason },
    };
  }
  if (err instanceof NotReadyError) {
    return {
      status: 503,
      headers: { 'Retry-After': '2' },
      body: { code: 'NOT_READY', message: err.message, retryable: true },
    };
  }
  return {
    status: 500,
    headers: {},
    body: {
      code: 'INTERNAL',
      message: `internal error: ${err instanceof Error ? err.message : String(err)}`,
      retryable: true,
    },
  };
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string>): void {
  if (res.headersSent || res.destroyed) return;
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}
