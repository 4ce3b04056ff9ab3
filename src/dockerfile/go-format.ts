/** Go's `%q` / `%v` formatting, as Docker's legacy builder wrote history strings with it. */

const GO_ESCAPES: Record<string, string> = {
  '\x07': '\\a', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\v': '\\v', '\\': '\\\\',
};

/** strconv.Quote */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    if (ch === '"') out += '\\"';
    else if (GO_ESCAPES[ch]) out += GO_ESCAPES[ch];
    else if (ch.charCodeAt(0) < 0x20 || ch === '\x7f') out += `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + '"';
}

/** `%q` of a []string: `["a" "b"]` */
export function goQuoteList(list: readonly string[]): string {
  return `[${list.map(goQuote).join(' ')}]`;
}

/** `%v` of a []string: `[a b]` */
export function goList(list: readonly string[]): string {
  return `[${list.join(' ')}]`;
}

/** `%q` of an int (a rune literal), e.g. 3 -> `'\x03'`, 97 -> `'a'`. */
export function goQuoteRune(n: number): string {
  const ch = String.fromCodePoint(n);
  if (ch === "'") return "'\\''";
  if (GO_ESCAPES[ch]) return `'${GO_ESCAPES[ch]}'`;
  if (n < 0x20 || n === 0x7f) return `'\\x${n.toString(16).padStart(2, '0')}'`;
  return `'${ch}'`;
}

/** time.Duration.String() of nanoseconds: `30s`, `1m30s`, `500ms`, `0s`. */
export function goDuration(ns: number): string {
  if (ns === 0) return '0s';
  const neg = ns < 0;
  let u = Math.abs(ns);
  let out: string;
  if (u < 1e9) {
    if (u < 1e3) out = `${u}ns`;
    else if (u < 1e6) out = `${trimFloat(u / 1e3)}µs`;
    else out = `${trimFloat(u / 1e6)}ms`;
  } else {
    const h = Math.floor(u / 3600e9);
    u -= h * 3600e9;
    const m = Math.floor(u / 60e9);
    u -= m * 60e9;
    const s = `${trimFloat(u / 1e9)}s`;
    out = h > 0 ? `${h}h${m}m${s}` : m > 0 ? `${m}m${s}` : s;
  }
  return neg ? `-${out}` : out;
}

function trimFloat(x: number): string {
  return Number(x.toFixed(9)).toString();
}
