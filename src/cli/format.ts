/** Docker's human formats, as the seed shows them. */

/** go-units HumanSize: decimal units, 4 significant digits (`12.29 kB`, `131.3 MB`). */
export function humanSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toPrecision(4))} ${units[i]}`;
}

/** go-units HumanDuration, plus " ago". */
export function humanAgo(iso: string, now = Date.now()): string {
  const s = Math.max(0, (now - Date.parse(iso)) / 1000);
  const d = (() => {
    if (s < 1) return 'Less than a second';
    if (s < 2) return '1 second';
    if (s < 60) return `${Math.floor(s)} seconds`;
    const m = s / 60;
    if (m < 2) return 'About a minute';
    if (m < 60) return `${Math.floor(m)} minutes`;
    const h = m / 60;
    if (Math.round(h) === 1) return 'About an hour';
    if (h < 48) return `${Math.round(h)} hours`;
    if (h < 24 * 7 * 2) return `${Math.floor(h / 24)} days`;
    if (h < 24 * 30 * 2) return `${Math.floor(h / 24 / 7)} weeks`;
    if (h < 24 * 365 * 2) return `${Math.floor(h / 24 / 30)} months`;
    return `${Math.floor(h / 24 / 365)} years`;
  })();
  return `${d} ago`;
}

/** Left-aligned columns separated by at least three spaces, like Docker's tabwriter. */
export function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]! + 3))).join('').trimEnd()).join('\n') + '\n';
}
