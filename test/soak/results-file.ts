// docs/reliability.md is written by the scripts that measure (the chaos soak, the CNI fuzz run):
// each owns one section between `<!-- NAME:begin -->` and `<!-- NAME:end -->` and replaces only it.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const RELIABILITY_DOC = join(import.meta.dirname, '..', '..', 'docs', 'reliability.md');

export function writeSection(name: string, markdown: string, file = RELIABILITY_DOC): void {
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  const text = readFileSync(file, 'utf8');
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a < 0 || b < a) throw new Error(`${file} has no ${begin} ... ${end} section`);
  writeFileSync(file, `${text.slice(0, a + begin.length)}\n${markdown.trim()}\n${text.slice(b)}`);
}
