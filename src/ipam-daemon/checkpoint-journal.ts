// The checkpoint journal's framing (pure: bytes in, records out). The journal is a file of zeros
// written in place (preallocated, so a group commit's O_DSYNC write changes no metadata: one disk
// flush, no filesystem journal commit); each record is one line `<crc32 of the JSON, 8 hex> <JSON>\n`.
// The writer numbers its records from 1 (`"seq"`); one issued while earlier writes were still in
// flight names the oldest of them (`"waitsFor"`): it is acknowledged only once that write and
// every one up to its own are durable.
//
// Reading: records are applied in order. Where a record is not whole (no newline, a bad checksum,
// zeros, garbage) the journal ends — a crash cut that write short, and it was never acknowledged —
// if nothing valid follows it but records that wait for it (`waitsFor` at most its number, the
// last whole record's plus one): issued beside it, never acknowledged either, they are dropped
// too. Any other valid record after an invalid one means acknowledged data was damaged: the
// journal is corrupt. (A damaged byte in the last record, or in one the records after it wait for,
// reads as such a crash cut: it cannot be told apart.) Lines of the first journal format (plain
// JSON, no checksum, appended) are still read, so a checkpoint left by an older version restores
// as it was.

import { crc32 } from 'node:zlib';

export interface JournalParse {
  /** The records' JSON texts (already checksummed), in order. */
  records: string[];
  /** Set when the journal is corrupt: what and where. */
  corrupt?: string;
}

export function encodeRecord(json: string): Buffer {
  const body = Buffer.from(json, 'utf8');
  const head = Buffer.from(`${crc32(body).toString(16).padStart(8, '0')} `, 'latin1');
  return Buffer.concat([head, body, NEWLINE]);
}

const NEWLINE = Buffer.from('\n');
const FRAMED = /^[0-9a-f]{8} /;

export function parseJournal(buf: Buffer): JournalParse {
  const records: string[] = [];
  /** Line number of the first record that is not whole; later valid ones make the file corrupt. */
  let brokenAt: number | null = null;
  const corrupt = () => ({ records, corrupt: `line ${brokenAt}: damaged, with valid records after it` });
  /** Whether `text`, valid and after the broken record, waits for it (never acknowledged). */
  const waitsForBroken = (text: string): boolean => {
    const last = records.length === 0 ? 0 : sequenceOf(records[records.length - 1] as string)?.seq;
    const waitsFor = sequenceOf(text)?.waitsFor;
    return last !== undefined && waitsFor !== undefined && waitsFor <= last + 1;
  };
  let line = 0;
  let start = 0;
  while (start < buf.length) {
    let end = buf.indexOf(0x0a, start);
    const whole = end >= 0;
    if (!whole) end = buf.length;
    line++;
    const seg = buf.subarray(start, end);
    const text = recordText(seg, whole);
    start = end + 1;
    if (text === 'blank') continue;
    if (text === null) {
      brokenAt ??= line;
      // A damaged newline (or zeros where a record was not written) joins a record to the next
      // one: look for a whole record inside.
      const inside = whole ? embeddedRecord(seg) : null;
      if (inside !== null && !waitsForBroken(inside)) return corrupt();
      continue;
    }
    if (brokenAt !== null) {
      if (!waitsForBroken(text)) return corrupt();
      continue;
    }
    records.push(text);
  }
  return { records };
}

/** A record's number and the oldest write it waits for; null for records without a number. */
function sequenceOf(text: string): { seq: number; waitsFor?: number } | null {
  try {
    const r = JSON.parse(text) as { seq?: unknown; waitsFor?: unknown };
    if (!Number.isSafeInteger(r.seq)) return null;
    return Number.isSafeInteger(r.waitsFor)
      ? { seq: r.seq as number, waitsFor: r.waitsFor as number }
      : { seq: r.seq as number };
  } catch {
    return null;
  }
}

/** The JSON of a framed record with a good checksum that ends this segment (after its first byte). */
function embeddedRecord(seg: Buffer): string | null {
  const text = seg.toString('latin1');
  const re = /[0-9a-f]{8} \{/g;
  re.lastIndex = 1;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const body = seg.subarray(m.index + 9);
    if (crc32(body) === Number.parseInt(text.slice(m.index, m.index + 8), 16)) return body.toString('utf8');
    re.lastIndex = m.index + 1;
  }
  return null;
}

/**
 * A record's JSON; 'blank' for the zeros after the last record or an empty line; null for a record
 * that is not whole (zeros ending in a newline are one: a write of which only the end landed).
 */
function recordText(seg: Buffer, whole: boolean): string | 'blank' | null {
  if (seg.length === 0) return 'blank';
  if (!whole) return seg[0] === 0 && seg.equals(Buffer.alloc(seg.length)) ? 'blank' : null;
  const s = seg.toString('utf8');
  if (FRAMED.test(s)) {
    const body = seg.subarray(9);
    return crc32(body) === Number.parseInt(s.slice(0, 8), 16) ? body.toString('utf8') : null;
  }
  // The first format: plain JSON lines; a line that is not JSON is reported by the caller.
  return s.startsWith('{') ? s : null;
}
