/**
 * `--format` as the docker CLI takes it for lists (`images`, `history`): a Go template run once
 * per row, or `table TEMPLATE` (a header row, then columns aligned as Docker's tabwriter aligns
 * them: at least 10 wide, 3 spaces of padding). `\t` and `\n` in the format are a tab and a
 * newline, as in Docker.
 */
import { execTemplate, parseTemplate, type StrictObject } from './go-template.js';

/** Docker's tabwriter (minwidth 10, padding 3): every tab-ended cell is padded; the last is not. */
export function tabwrite(lines: string[]): string {
  const cells = lines.map((l) => l.split('\t'));
  const widths: number[] = [];
  for (const row of cells) row.slice(0, -1).forEach((c, i) => { widths[i] = Math.max(widths[i] ?? 0, c.length + 3, 10); });
  return cells.map((row) => row.map((c, i) => (i < row.length - 1 ? c.padEnd(widths[i]!) : c)).join('').trimEnd()).map((l) => `${l}\n`).join('');
}

/**
 * Renders `rows` by `format`. `header` is the row whose fields are the column titles (Docker
 * runs the same template over it). Returns undefined for a format that is no template, so the
 * caller can handle its own words (`json`, plain `table`).
 */
export function renderRows(format: string, rows: StrictObject[], header: StrictObject): string {
  const unescaped = format.replace(/\\t/g, '\t').replace(/\\n/g, '\n');
  const isTable = /^table(\s|$)/.test(unescaped.trimStart());
  const body = isTable ? unescaped.trimStart().slice(5).replace(/^ +/, '') : unescaped;
  const nodes = parseTemplate(body);
  if (!isTable) return rows.map((r) => `${execTemplate(nodes, r)}\n`).join('');
  const lines = [header, ...rows].map((r) => execTemplate(nodes, r));
  return tabwrite(lines.flatMap((l) => l.split('\n')));
}

/** A formatter context: the given fields, and an error (Docker's words) for any other. */
export function strictRow(type: string, fields: Record<string, unknown>): StrictObject {
  return { strict: true, type, fields };
}
