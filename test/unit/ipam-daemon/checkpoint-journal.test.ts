import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeRecord, parseJournal } from '../../../src/ipam-daemon/checkpoint-journal.ts';

const rec = (n: number) => encodeRecord(JSON.stringify({ put: [{ containerId: `c${n}` }] }));

describe('checkpoint journal framing', () => {
  test('records read back in order; the preallocated zeros after them are the free space', () => {
    const buf = Buffer.concat([rec(1), rec(2), Buffer.alloc(512)]);
    assert.deepEqual(parseJournal(buf), {
      records: [
        JSON.stringify({ put: [{ containerId: 'c1' }] }),
        JSON.stringify({ put: [{ containerId: 'c2' }] }),
      ],
    });
    assert.deepEqual(parseJournal(Buffer.alloc(4096)), { records: [] });
  });

  test('a record cut short, or with a bad checksum, at the end is a write the crash interrupted', () => {
    const two = rec(2);
    const cut = Buffer.concat([rec(1), two.subarray(0, two.length - 3), Buffer.alloc(64)]);
    assert.equal(parseJournal(cut).records.length, 1);
    const bad = Buffer.from(two);
    bad[12] = 0x41;
    assert.deepEqual(parseJournal(Buffer.concat([rec(1), bad])), {
      records: [parseJournal(rec(1)).records[0]],
    });
  });

  test('a damaged record before a whole one makes the journal corrupt, even when its newline is what broke', () => {
    const bad = Buffer.from(rec(1));
    bad[12] = 0x41;
    assert.match(parseJournal(Buffer.concat([bad, rec(2)])).corrupt ?? '', /line 1: damaged/);
    const joined = Buffer.from(rec(1));
    joined[joined.length - 1] = 0x20; // the newline
    assert.match(parseJournal(Buffer.concat([joined, rec(2)])).corrupt ?? '', /line 1: damaged/);
  });

  test('lines of the first format (plain JSON, no checksum) are still read', () => {
    const old = Buffer.from('{"put":[]}\n{"del":[]}\n{"put":[{"contai');
    assert.deepEqual(parseJournal(old), { records: ['{"put":[]}', '{"del":[]}'] });
  });

  describe('two writes in flight (pipelined group commit)', () => {
    /** Record `seq` as the store writes it, waiting for write `waitsFor` when issued beside it. */
    const numbered = (seq: number, waitsFor?: number): Buffer =>
      encodeRecord(
        `{"seq":${seq}${waitsFor ? `,"waitsFor":${waitsFor}` : ''},${JSON.stringify({ put: [{ containerId: `c${seq}`, ip: `10.0.0.${seq}` }] }).slice(1)}`,
      );
    const ids = (records: string[]) => records.map((r) => (JSON.parse(r) as { seq: number }).seq);
    /** What a crash can leave of one write: nothing, a prefix, a suffix (sectors out of order), all. */
    const torn = (rec: Buffer): Array<{ bytes: Buffer; whole: boolean }> => {
      const out = [{ bytes: rec, whole: true }];
      for (let o = 0; o < rec.length; o++) {
        out.push({ bytes: Buffer.concat([rec.subarray(0, o), Buffer.alloc(rec.length - o)]), whole: false });
        if (o > 0) out.push({ bytes: Buffer.concat([Buffer.alloc(o), rec.subarray(o)]), whole: false });
      }
      return out;
    };

    test('a crash with two unanswered writes: every torn combination reads as the records before the first one not whole', () => {
      // Records 1 and 2 are durable (answered); 3 and 4 (issued beside 3) were in flight.
      const durable = Buffer.concat([numbered(1), numbered(2, 1)]);
      const [r3, r4] = [numbered(3), numbered(4, 3)];
      let cases = 0;
      for (const a of torn(r3)) {
        for (const b of torn(r4)) {
          const parsed = parseJournal(Buffer.concat([durable, a.bytes, b.bytes, Buffer.alloc(64)]));
          const want = a.whole ? (b.whole ? [1, 2, 3, 4] : [1, 2, 3]) : [1, 2];
          assert.equal(parsed.corrupt, undefined, `r3 whole ${a.whole}, r4 whole ${b.whole}`);
          assert.deepEqual(ids(parsed.records), want);
          cases++;
        }
      }
      assert.ok(cases > 10_000, `${cases} cases`);
    });

    test('three in flight: records after the cut that wait for it are dropped with it', () => {
      const [r1, r2, r3] = [numbered(1), numbered(2, 1), numbered(3, 1)];
      const gone = (r: Buffer) => Buffer.alloc(r.length);
      assert.deepEqual(ids(parseJournal(Buffer.concat([gone(r1), r2, r3])).records), []);
      assert.deepEqual(ids(parseJournal(Buffer.concat([r1, gone(r2), r3])).records), [1]);
      assert.deepEqual(ids(parseJournal(Buffer.concat([r1, r2, gone(r3)])).records), [1, 2]);
      assert.deepEqual(ids(parseJournal(Buffer.concat([gone(r1), gone(r2), r3])).records), []);
    });

    test('after a record that is not whole, a valid record that does not wait for it makes the journal corrupt', () => {
      const r1 = numbered(1);
      const cut = Buffer.alloc(numbered(2).length); // record 2 never written
      // Record 3 was issued after record 2 was durable (it waits for nothing): 2 was damaged.
      assert.match(
        parseJournal(Buffer.concat([r1, cut, numbered(3)])).corrupt ?? '',
        /line 2: damaged, with valid records after it/,
      );
      // It waits only for record 3 (2 had completed when it was issued): damaged too.
      assert.match(parseJournal(Buffer.concat([r1, cut, numbered(4, 3)])).corrupt ?? '', /damaged/);
      // Issued while record 2 was in flight: the crash cut; a record after it that does not wait is damage.
      assert.deepEqual(ids(parseJournal(Buffer.concat([r1, cut, numbered(3, 2)])).records), [1]);
      assert.match(
        parseJournal(Buffer.concat([r1, cut, numbered(3, 2), numbered(4)])).corrupt ?? '',
        /damaged/,
      );
      // The first format's records carry no numbers: a valid one after a broken one stays corrupt.
      const plain = Buffer.from('{"put":[]}\ngarbage\n{"put":[]}\n');
      assert.match(parseJournal(plain).corrupt ?? '', /line 2: damaged/);
    });
  });
});
