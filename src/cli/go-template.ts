/**
 * The subset of Go's text/template that `docker images/history/inspect --format` users write:
 * field chains (`{{.Repository}}`, `{{.Config.Env}}`, `{{.}}`), string literals, pipes, and the
 * functions `json`, `upper`, `lower`, `title`, `join`, `len`, `print`, `println`. Control actions
 * (`if`, `range`, `with`, …) are refused with a message, never misread. Values print as Go's
 * `%v` prints decoded JSON: `[a b]` for a list, `map[k:v]` for an object, `<nil>` for null.
 */
import { SlipwayError } from '../errors.js';

type Value = unknown;
type Node = { text: string } | { pipe: Cmd[] };
type Operand = { field: string[] } | { str: string } | { num: number } | { fn: string };
type Cmd = Operand[];

/** An object whose unknown fields are an error (a Docker formatter context), not `<no value>`. */
export interface StrictObject { strict: true; type: string; fields: Record<string, Value> }

function fail(msg: string): never {
  throw new SlipwayError('ERR_USAGE', `template: ${msg}`);
}

const CONTROL = new Set(['if', 'else', 'end', 'range', 'with', 'define', 'template', 'block', 'break', 'continue']);

function lexAction(src: string): Cmd[] {
  const cmds: Cmd[] = [[]];
  const re = /\s*(?:(\|)|"((?:[^"\\]|\\.)*)"|`([^`]*)`|(-?\d+(?:\.\d+)?)|(\.(?:[A-Za-z_]\w*)?(?:\.[A-Za-z_]\w*)*)|([A-Za-z_]\w*))\s*/y;
  let at = 0;
  while (at < src.length) {
    re.lastIndex = at;
    const m = re.exec(src);
    if (!m) fail(`unexpected "${src.slice(at).trim()}" in command`);
    at = re.lastIndex;
    if (m[1]) cmds.push([]);
    else if (m[2] !== undefined) cmds.at(-1)!.push({ str: JSON.parse(`"${m[2]}"`) as string });
    else if (m[3] !== undefined) cmds.at(-1)!.push({ str: m[3] });
    else if (m[4] !== undefined) cmds.at(-1)!.push({ num: Number(m[4]) });
    else if (m[5] !== undefined) cmds.at(-1)!.push({ field: m[5] === '.' ? [] : m[5].slice(1).split('.') });
    else {
      if (CONTROL.has(m[6]!)) fail(`{{${m[6]}}} is not supported by slipway's --format (fields, json, upper, lower, title, join, len, print, println)`);
      cmds.at(-1)!.push({ fn: m[6]! });
    }
  }
  if (cmds.some((c) => c.length === 0)) fail('missing command in pipeline');
  return cmds;
}

/** Parses a template into text and actions; `{{-` and `-}}` trim the space beside them. */
export function parseTemplate(src: string): Node[] {
  const nodes: Node[] = [];
  let rest = src;
  let trimNext = false;
  for (;;) {
    const open = rest.indexOf('{{');
    let text = open < 0 ? rest : rest.slice(0, open);
    if (trimNext) text = text.replace(/^\s+/, '');
    if (open < 0) {
      if (text) nodes.push({ text });
      return nodes;
    }
    const close = rest.indexOf('}}', open);
    if (close < 0) fail('unclosed action');
    let inner = rest.slice(open + 2, close);
    if (/^-\s/.test(inner)) { text = text.replace(/\s+$/, ''); inner = inner.slice(1); }
    trimNext = /\s-$/.test(inner);
    if (trimNext) inner = inner.slice(0, -1);
    if (text) nodes.push({ text });
    if (!inner.trim().startsWith('/*')) nodes.push({ pipe: lexAction(inner) });
    rest = rest.slice(close + 2);
  }
}

function field(v: Value, path: string[]): Value {
  let cur = v;
  for (const name of path) {
    if (cur !== null && typeof cur === 'object' && 'strict' in cur && (cur as StrictObject).strict) {
      const s = cur as StrictObject;
      if (!(name in s.fields)) fail(`can't evaluate field ${name} in type ${s.type}`);
      cur = s.fields[name];
    } else if (cur !== null && typeof cur === 'object' && !Array.isArray(cur)) {
      const o = cur as Record<string, Value>;
      cur = Object.hasOwn(o, name) ? o[name] : undefined;
    } else if (cur === undefined || cur === null) {
      return undefined;
    } else {
      fail(`can't evaluate field ${name} in type ${Array.isArray(cur) ? 'slice' : typeof cur}`);
    }
  }
  return cur;
}

/** What a StrictObject is as plain data (for json and %v). */
function plain(v: Value): Value {
  return v !== null && typeof v === 'object' && 'strict' in v ? (v as StrictObject).fields : v;
}

/** Go's `%v` of decoded JSON. */
export function goPrint(v: Value): string {
  const p = plain(v);
  if (p === undefined) return '<no value>';
  if (p === null) return '<nil>';
  if (Array.isArray(p)) return `[${p.map(goPrint).join(' ')}]`;
  if (typeof p === 'object') return `map[${Object.keys(p).sort().map((k) => `${k}:${goPrint((p as Record<string, Value>)[k])}`).join(' ')}]`;
  return String(p);
}

/** encoding/json's output: `<`, `>`, `&` and the line separators escaped. */
export function goJson(v: Value): string {
  const s = JSON.stringify(plain(v) ?? null, (_k, x: Value) => plain(x)) ?? 'null';
  return s.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

const FUNCS: Record<string, (args: Value[]) => Value> = {
  json: (a) => goJson(a[0]),
  upper: (a) => goPrint(a[0]).toUpperCase(),
  lower: (a) => goPrint(a[0]).toLowerCase(),
  title: (a) => goPrint(a[0]).replace(/\b\w/g, (c) => c.toUpperCase()),
  join: (a) => (Array.isArray(plain(a[0])) ? (plain(a[0]) as Value[]).map(goPrint).join(goPrint(a[1])) : fail('join: not a list')),
  len: (a) => { const p = plain(a[0]); return Array.isArray(p) || typeof p === 'string' ? p.length : p && typeof p === 'object' ? Object.keys(p).length : fail('len of a non-collection'); },
  print: (a) => a.map(goPrint).join(''),
  println: (a) => `${a.map(goPrint).join(' ')}\n`,
};

function evalCmd(cmd: Cmd, dot: Value, piped: Value[]): Value {
  const val = (o: Operand): Value => ('field' in o ? field(dot, o.field) : 'str' in o ? o.str : 'num' in o ? o.num : fail(`function "${o.fn}" used as a value`));
  const head = cmd[0]!;
  if ('fn' in head) {
    const f = FUNCS[head.fn] ?? fail(`function "${head.fn}" not defined`);
    return f([...cmd.slice(1).map(val), ...piped]);
  }
  if (cmd.length > 1 || piped.length > 0) fail(`can't give argument to non-function ${'field' in head ? `.${head.field.join('.')}` : 'a literal'}`);
  return val(head);
}

/** Runs a parsed template against `dot`. */
export function execTemplate(nodes: Node[], dot: Value): string {
  let out = '';
  for (const n of nodes) {
    if ('text' in n) { out += n.text; continue; }
    let piped: Value[] = [];
    for (const cmd of n.pipe) piped = [evalCmd(cmd, dot, piped)];
    out += goPrint(piped[0]);
  }
  return out;
}
