// Validates an AsyncAPI document with the pinned @asyncapi/parser: every
// diagnostic (error, warning, information, hint) is printed; any error or
// warning fails.
import { readFileSync } from 'node:fs';
import { Parser } from '@asyncapi/parser';

const file = process.argv[2];
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(file, 'utf8'), { source: file });
const names = ['error', 'warning', 'information', 'hint'];
let bad = 0;
for (const d of diagnostics) {
  const where = d.range ? `${d.range.start.line + 1}:${d.range.start.character + 1}` : '-';
  console.log(`${file}:${where} ${names[d.severity]} ${d.code}: ${d.message} (${(d.path || []).join('.')})`);
  if (d.severity <= 1) bad++;
}
if (!document || bad > 0) {
  console.log(`${file}: ${bad} errors or warnings`);
  process.exit(1);
}
console.log(`${file}: valid AsyncAPI ${document.version()}, ${diagnostics.length} notes`);
