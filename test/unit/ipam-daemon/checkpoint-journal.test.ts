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
});
