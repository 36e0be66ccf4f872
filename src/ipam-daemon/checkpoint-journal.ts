// The checkpoint journal's framing (pure: bytes in, records out). The journal is a file of zeros
// written in place (preallocated, so a group commit's O_DSYNC write changes no metadata: one disk
// flush, no filesystem journal commit); each record is one line `<crc32 of the JSON, 8 hex> <JSON>\n`.
//
// Reading: records are applied in order. Where a record is not whole (no newline, a bad checksum,
// zeros, garbage) the journal ends, if nothing valid follows: that is the one write a crash cut short,
// never acknowledged (one write is in flight at a time, and nothing is written after a failed one).
// A valid record after an invalid one means acknowledged data was damaged: the journal is corrupt.
// Lines of the first journal format (plain JSON, no checksum, appended) are still read, so a
// checkpoint left by an older version restores as it was.

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
      // A damaged newline joins a record to the next one: look for a whole record inside.
      if (whole && hasEmbeddedRecord(seg)) {
        return { records, corrupt: `line ${brokenAt}: damaged, with valid records after it` };
      }
      continue;
    }
    if (brokenAt !== null) {
      return { records, corrupt: `line ${brokenAt}: damaged, with valid records after it` };
    }
    records.push(text);
  }
  return { records };
}

/** Whether a framed record with a good checksum ends this segment (after its first byte). */
function hasEmbeddedRecord(seg: Buffer): boolean {
  const text = seg.toString('latin1');
  const re = /[0-9a-f]{8} \{/g;
  re.lastIndex = 1;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const body = seg.subarray(m.index + 9);
    if (crc32(body) === Number.parseInt(text.slice(m.index, m.index + 8), 16)) return true;
    re.lastIndex = m.index + 1;
  }
  return false;
}

/** A record's JSON; 'blank' for zeros or an empty line; null for a record that is not whole. */
function recordText(seg: Buffer, whole: boolean): string | 'blank' | null {
  if (seg.length === 0 || (seg[0] === 0 && seg.equals(Buffer.alloc(seg.length)))) return 'blank';
  if (!whole) return null;
  const s = seg.toString('utf8');
  if (FRAMED.test(s)) {
    const body = seg.subarray(9);
    return crc32(body) === Number.parseInt(s.slice(0, 8), 16) ? body.toString('utf8') : null;
  }
  // The first format: plain JSON lines; a line that is not JSON is reported by the caller.
  return s.startsWith('{') ? s : null;
}
