// The socket's framed transport: the same routes, bodies and answers as HTTP/1.1 (server.ts), in
// length-prefixed frames, for the clients on the hot path (the CNI shim, the Node plugin). A frame
// is 6 header bytes — FRAME_MAGIC, FRAME_VERSION, the payload's length (u32, big-endian) — and the
// payload: a request is "<METHOD> <path>\n<JSON body, or nothing>", an answer "<status>\n<JSON>".
// The magic byte is no HTTP method's first letter, so the server tells the two apart by the first
// byte of a connection. Pure: no I/O here.

export const FRAME_MAGIC = 0xfa;
export const FRAME_VERSION = 1;
export const FRAME_HEADER_BYTES = 6;
/** The head line ("POST /v1/allocate", or a GET with its query) is at most this long. */
export const MAX_FRAME_HEAD_BYTES = 1024;
const NL = 0x0a;

/** One frame: the header and `head` + "\n" + `body` as UTF-8. */
export function encodeFrame(head: string, body: string): Buffer {
  const headLen = Buffer.byteLength(head);
  const size = headLen + 1 + Buffer.byteLength(body);
  const buf = Buffer.allocUnsafe(FRAME_HEADER_BYTES + size);
  buf[0] = FRAME_MAGIC;
  buf[1] = FRAME_VERSION;
  buf.writeUInt32BE(size, 2);
  buf.write(head, FRAME_HEADER_BYTES, headLen);
  buf[FRAME_HEADER_BYTES + headLen] = NL;
  buf.write(body, FRAME_HEADER_BYTES + headLen + 1);
  return buf;
}

export interface Frame {
  head: string;
  body: Buffer;
}

/** A stream that is not (or no longer) well-framed: answer `status` and close the connection. */
export class FrameError extends Error {
  readonly status: 400 | 413;
  constructor(status: 400 | 413, message: string) {
    super(message);
    this.status = status;
  }
}

/**
 * Cuts frames out of a byte stream. `push` the chunks as they come; `next` returns the next whole
 * frame, null while one is still incomplete, and throws FrameError on bytes that are not a frame
 * or a frame over `maxPayload` (judged from its header, before its payload is buffered).
 */
export class FrameReader {
  private buf: Buffer | null = null;
  private readonly maxPayload: number;
  constructor(maxPayload: number) {
    this.maxPayload = maxPayload;
  }

  push(chunk: Buffer): void {
    // One chunk per frame is the common case: no copy then.
    this.buf = this.buf === null ? chunk : Buffer.concat([this.buf, chunk]);
  }

  /** Bytes held that are not yet a whole frame. */
  get pending(): number {
    return this.buf?.length ?? 0;
  }

  next(): Frame | null {
    const buf = this.buf;
    if (buf === null || buf.length === 0) return null;
    if (buf[0] !== FRAME_MAGIC) throw new FrameError(400, 'not a frame (bad magic byte)');
    if (buf.length < 2) return null;
    if (buf[1] !== FRAME_VERSION)
      throw new FrameError(400, `frame version ${buf[1]} unsupported; use ${FRAME_VERSION}`);
    if (buf.length < FRAME_HEADER_BYTES) return null;
    const size = buf.readUInt32BE(2);
    if (size > this.maxPayload) throw new FrameError(413, `frame over ${this.maxPayload} bytes`);
    const end = FRAME_HEADER_BYTES + size;
    if (buf.length < end) {
      // The head line must end early: a stream without one is garbage, not a slow body.
      const seen = buf.subarray(
        FRAME_HEADER_BYTES,
        Math.min(end, FRAME_HEADER_BYTES + MAX_FRAME_HEAD_BYTES + 1),
      );
      if (seen.length > MAX_FRAME_HEAD_BYTES && seen.indexOf(NL) < 0) {
        throw new FrameError(400, `frame head line over ${MAX_FRAME_HEAD_BYTES} bytes`);
      }
      return null;
    }
    const payload = buf.subarray(FRAME_HEADER_BYTES, end);
    this.buf = end === buf.length ? null : buf.subarray(end);
    const nl = payload.indexOf(NL);
    if (nl < 0 || nl > MAX_FRAME_HEAD_BYTES) throw new FrameError(400, 'frame without a head line');
    return { head: payload.toString('latin1', 0, nl), body: payload.subarray(nl + 1) };
  }
}

/** An answer frame's payload: the status and the JSON body's text. */
export function parseAnswer(payload: Frame): { status: number; body: string } {
  const status = Number(payload.head);
  if (!Number.isInteger(status) || status < 100 || status > 599) {
    throw new FrameError(400, `bad status in answer frame: ${JSON.stringify(payload.head.slice(0, 40))}`);
  }
  return { status, body: payload.body.toString('utf8') };
}
