/**
 * Wildcards in COPY/ADD sources as Docker 20.10's legacy builder matches them: Go's
 * `filepath.Match` (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes; `*` and `?` never cross `/`)
 * applied to every path of the build context. Also the pattern translation that
 * `.dockerignore` matching shares (`globToRegExpSource`).
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { SlipwayError } from '../errors.js';

/** One parsed element of a Go glob pattern. */
type GlobToken =
  | { kind: 'literal'; ch: string; escaped: boolean }
  | { kind: 'star' }
  | { kind: 'any' }
  | { kind: 'class'; negated: boolean; ranges: Array<[number, number]> };

/**
 * True if the source path has an unescaped `*`, `?` or `[` (the builder's
 * `containsWildcards`); only then does it match the context instead of naming one path.
 */
export function hasWildcard(p: string): boolean {
  for (let i = 0; i < p.length; i++) {
    const ch = p[i];
    if (ch === '\\') i++;
    else if (ch === '*' || ch === '?' || ch === '[') return true;
  }
  return false;
}

/**
 * Go's `filepath.Match(pattern, name)`: the whole name must match; `*` and `?` do not
 * match `/`. Throws `SlipwayError('ERR_CONTEXT_PATH', 'syntax error in pattern')` for a
 * malformed pattern (unclosed `[`, empty class, trailing `\`, ...), as Go reports
 * `ErrBadPattern` whatever the name.
 */
export function matchSegment(pattern: string, name: string): boolean {
  return new RegExp(`^${globToRegExpSource(pattern)}$`, 'su').test(name);
}

/**
 * Translates a Go glob pattern into the source of an unanchored JS RegExp (flags `su`).
 * With `doubleStar` (the `.dockerignore` rules of Docker's pattern matcher), `**` matches
 * any number of directories: a `**` followed by a slash and more becomes "any directories,
 * or none", a trailing `**` becomes `.*`. Throws like `matchSegment` on a malformed pattern.
 */
export function globToRegExpSource(pattern: string, options: { doubleStar?: boolean } = {}): string {
  const tokens = parseGlob(pattern);
  let out = '';
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (options.doubleStar && t.kind === 'star' && tokens[i + 1]?.kind === 'star') {
      i++;
      const slash = tokens[i + 1];
      if (slash?.kind === 'literal' && slash.ch === '/' && !slash.escaped) i++;
      out += i === tokens.length - 1 ? '.*' : '(?:.*/)?';
      continue;
    }
    out += tokenSource(t);
  }
  return out;
}

/**
 * The context entries matching a source pattern, relative to `contextDir` (no leading
 * `./`), minus those `isIgnored` rejects. The order is Go's `filepath.Walk` order (names
 * compared byte-wise within each directory, depth first), which Docker's `multi:` history
 * hash depends on. Like Docker, a leading `/` and then `./` are trimmed but the pattern is
 * not otherwise cleaned (a doubled slash matches nothing), symlinked directories are not
 * entered, and a malformed pattern matches nothing. A pattern that cleans to `..` or
 * `../...` matches nothing: the caller reports "forbidden path outside the build context".
 * Directories that `isIgnored` rejects are still searched, since a `!` exception can
 * bring back entries below them.
 */
export async function expandSourcePattern(
  contextDir: string,
  pattern: string,
  isIgnored: (rel: string) => boolean,
): Promise<string[]> {
  let p = pattern.startsWith('/') ? pattern.slice(1) : pattern;
  if (p.startsWith('./')) p = p.slice(2);
  const cleaned = path.posix.normalize(p);
  if (cleaned === '..' || cleaned.startsWith('../')) return [];
  let tokens: GlobToken[];
  try {
    tokens = parseGlob(p);
  } catch (e) {
    // Docker ignores filepath.Match's error, so a bad pattern simply matches nothing.
    if (e instanceof SlipwayError) return [];
    throw e;
  }
  const found: string[] = [];
  const segments = splitSegments(tokens);
  if (segments) {
    const regexes = segments.map((seg) => new RegExp(`^${seg.map(tokenSource).join('')}$`, 'su'));
    await walkSegments(contextDir, '', regexes, found, isIgnored);
  } else {
    const whole = new RegExp(`^${tokens.map(tokenSource).join('')}$`, 'su');
    await walkAll(contextDir, '', whole, found, isIgnored);
  }
  return found;
}

/** Directory entries in Go's ReadDir order: names compared as UTF-8 bytes. */
async function sortedEntries(dir: string) {
  const entries = await readdir(dir, { withFileTypes: true });
  return entries.sort((a, b) => Buffer.compare(Buffer.from(a.name), Buffer.from(b.name)));
}

/**
 * The fast path: every match has exactly as many segments as the pattern, so only
 * directories whose names match the pattern's leading segments are read.
 */
async function walkSegments(
  dir: string, rel: string, regexes: RegExp[], found: string[], isIgnored: (rel: string) => boolean,
): Promise<void> {
  const [re, ...rest] = regexes;
  if (!re) return;
  for (const entry of await sortedEntries(dir)) {
    if (!re.test(entry.name)) continue;
    const childRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
    if (rest.length === 0) {
      if (!isIgnored(childRel)) found.push(childRel);
    } else if (entry.isDirectory()) {
      await walkSegments(path.join(dir, entry.name), childRel, rest, found, isIgnored);
    }
  }
}

/** The general path (a class or escape that can match `/`): every entry, as Docker walks. */
async function walkAll(
  dir: string, rel: string, re: RegExp, found: string[], isIgnored: (rel: string) => boolean,
): Promise<void> {
  for (const entry of await sortedEntries(dir)) {
    const childRel = rel === '' ? entry.name : `${rel}/${entry.name}`;
    if (re.test(childRel) && !isIgnored(childRel)) found.push(childRel);
    if (entry.isDirectory()) await walkAll(path.join(dir, entry.name), childRel, re, found, isIgnored);
  }
}

/**
 * Splits tokens at unescaped `/`, or returns null when some token could match `/` itself
 * (an escaped `/` or a class containing it) and segment-wise matching would be wrong.
 */
function splitSegments(tokens: GlobToken[]): GlobToken[][] | null {
  const SLASH = 0x2f;
  const segments: GlobToken[][] = [[]];
  for (const t of tokens) {
    if (t.kind === 'literal' && t.ch === '/') {
      if (t.escaped) return null;
      segments.push([]);
      continue;
    }
    if (t.kind === 'class') {
      const hasSlash = t.ranges.some(([lo, hi]) => lo <= SLASH && SLASH <= hi);
      if (hasSlash !== t.negated) return null;
    }
    segments[segments.length - 1]!.push(t);
  }
  return segments;
}

function badPattern(): SlipwayError {
  return new SlipwayError('ERR_CONTEXT_PATH', 'syntax error in pattern');
}

/** Parses a pattern with Go filepath.Match's syntax rules (Unix: `\` escapes). */
function parseGlob(pattern: string): GlobToken[] {
  const chars = Array.from(pattern);
  const tokens: GlobToken[] = [];
  let i = 0;
  // One class member: `]` and `-` must be escaped, and the class must go on after it.
  const classChar = (): number => {
    let ch = chars[i];
    if (ch === undefined || ch === '-' || ch === ']') throw badPattern();
    if (ch === '\\') {
      ch = chars[++i];
      if (ch === undefined) throw badPattern();
    }
    i++;
    if (i >= chars.length) throw badPattern();
    return ch.codePointAt(0)!;
  };
  while (i < chars.length) {
    const ch = chars[i++]!;
    if (ch === '*') tokens.push({ kind: 'star' });
    else if (ch === '?') tokens.push({ kind: 'any' });
    else if (ch === '\\') {
      const escaped = chars[i++];
      if (escaped === undefined) throw badPattern();
      tokens.push({ kind: 'literal', ch: escaped, escaped: true });
    } else if (ch === '[') {
      const negated = chars[i] === '^';
      if (negated) i++;
      const ranges: Array<[number, number]> = [];
      for (;;) {
        if (chars[i] === ']' && ranges.length > 0) {
          i++;
          break;
        }
        const lo = classChar();
        let hi = lo;
        if (chars[i] === '-') {
          i++;
          hi = classChar();
        }
        ranges.push([lo, hi]);
      }
      tokens.push({ kind: 'class', negated, ranges });
    } else {
      tokens.push({ kind: 'literal', ch, escaped: false });
    }
  }
  return tokens;
}

/** A code point as a RegExp escape that is valid inside and outside classes (flag `u`). */
function regexChar(cp: number): string {
  const ch = String.fromCodePoint(cp);
  return /^[A-Za-z0-9_]$/.test(ch) ? ch : `\\u{${cp.toString(16)}}`;
}

function tokenSource(t: GlobToken): string {
  switch (t.kind) {
    case 'star':
      return '[^/]*';
    case 'any':
      return '[^/]';
    case 'literal':
      return regexChar(t.ch.codePointAt(0)!);
    case 'class': {
      // Go accepts a reversed range such as [z-a] and it matches nothing; a RegExp would throw.
      const members = t.ranges
        .filter(([lo, hi]) => lo <= hi)
        .map(([lo, hi]) => (lo === hi ? regexChar(lo) : `${regexChar(lo)}-${regexChar(hi)}`));
      return `[${t.negated ? '^' : ''}${members.join('')}]`;
    }
  }
}
