// The socket's frame codec (src/ipam-daemon/frame.ts), pure: round trips, frames split at every
// byte, and the stream errors the server answers with 400/413 before closing.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  encodeFrame,
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  FrameError,
  FrameReader,
  MAX_FRAME_HEAD_BYTES,
  parseAnswer,
} from '../../../src/ipam-daemon/frame.ts';

const isFrameError = (status: number) => (e: unknown) => e instanceof FrameError && e.status === status;

describe('frame codec', () => {
  test('round trip, UTF-8 bodies, and frames cut at every byte', () => {
    const frames = [
      encodeFrame('POST /v1/allocate', '{"containerId":"c1","podName":"żółw"}'),
      encodeFrame('GET /v1/pool', ''),
      encodeFrame('200', '{"ok":true}'),
    ];
    const stream = Buffer.concat(frames);
    for (let cut = 0; cut <= stream.length; cut++) {
      const r = new FrameReader(1024);
      const got: Array<{ head: string; body: string }> = [];
      for (const part of [stream.subarray(0, cut), stream.subarray(cut)]) {
        if (part.length === 0) continue;
        r.push(part);
        for (let f = r.next(); f; f = r.next()) got.push({ head: f.head, body: f.body.toString('utf8') });
      }
      assert.deepEqual(got, [
        { head: 'POST /v1/allocate', body: '{"containerId":"c1","podName":"żółw"}' },
        { head: 'GET /v1/pool', body: '' },
        { head: '200', body: '{"ok":true}' },
      ]);
      assert.equal(r.pending, 0);
    }
  });

  test('an answer frame: status and body; a bad status is refused', () => {
    const r = new FrameReader(1024);
    r.push(encodeFrame('503', '{"code":"NO_IP"}'));
    assert.deepEqual(parseAnswer(r.next()!), { status: 503, body: '{"code":"NO_IP"}' });
    r.push(encodeFrame('HTTP', '{}'));
    assert.throws(() => parseAnswer(r.next()!), isFrameError(400));
  });

  test('not a frame, an unknown version, no head line: 400', () => {
    const bad = (bytes: Buffer) => {
      const r = new FrameReader(1024);
      r.push(bytes);
      return () => r.next();
    };
    assert.throws(bad(Buffer.from('GET / HTTP/1.1\r\n\r\n')), isFrameError(400));
    assert.throws(bad(Buffer.from([FRAME_MAGIC, 9, 0, 0, 0, 1, 10])), isFrameError(400));
    const noHead = Buffer.from([FRAME_MAGIC, 1, 0, 0, 0, 3, 0x7b, 0x7d, 0x20]);
    assert.throws(bad(noHead), isFrameError(400));
  });

  test('over the cap: 413 from the header alone, before the payload is held', () => {
    const r = new FrameReader(100);
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    header[0] = FRAME_MAGIC;
    header[1] = 1;
    header.writeUInt32BE(101, 2);
    r.push(header);
    assert.throws(() => r.next(), isFrameError(413));
    const max = new FrameReader(1 << 20);
    max.push(encodeFrame('POST /x', 'a'.repeat(99)));
    assert.ok(max.next(), 'a frame at the cap passes');
  });

  test('a long stream without a head line is refused before it is whole', () => {
    const r = new FrameReader(1 << 20);
    const f = encodeFrame(`POST /${'x'.repeat(MAX_FRAME_HEAD_BYTES + 10)}`, '{}');
    r.push(f.subarray(0, FRAME_HEADER_BYTES + MAX_FRAME_HEAD_BYTES + 1));
    assert.throws(() => r.next(), isFrameError(400));
  });

  test('incomplete frames wait, and say what they hold', () => {
    const f = encodeFrame('POST /v1/release', '{"containerId":"c"}');
    const r = new FrameReader(1024);
    r.push(f.subarray(0, 3));
    assert.equal(r.next(), null);
    r.push(f.subarray(3, f.length - 1));
    assert.equal(r.next(), null);
    assert.equal(r.pending, f.length - 1);
    r.push(f.subarray(f.length - 1));
    assert.equal(r.next()?.head, 'POST /v1/release');
  });
});
