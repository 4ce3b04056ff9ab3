/**
 * `.dockerignore` as Docker 20.10 applies it: the CLI's `dockerignore.ReadAll`, the
 * pattern matcher of `pkg/fileutils` (`**`, last match wins, `!` exceptions, a pattern
 * also matching a parent directory) and the context walk of `archive.TarWithOptions`,
 * which skips an excluded directory unless an exception pattern starts with its path.
 */
import { SlipwayError } from '../errors.js';
import { globToRegExpSource } from './glob.js';
import { readRegularText } from './special-file.js';

/** One cleaned `.dockerignore` line: `pattern` has no `!`; `exclusion` is true for `!pattern`. */
export interface IgnorePattern {
  readonly pattern: string;
  readonly exclusion: boolean;
}

/**
 * Parses `.dockerignore` text: drops a UTF-8 BOM, lines starting with `#` (before any
 * trimming, so ` #x` is a pattern), blank lines; trims whitespace; `!` marks an exception;
 * each pattern is cleaned like Go's `filepath.Clean` and loses a leading `/`. A pattern
 * that cleans to `.` is dropped (it can only match the context root, which is never
 * excluded). Throws `ERR_CONTEXT_PATH` as the docker CLI fails: `!` alone gives
 * `illegal exclusion pattern: "!"`, a malformed glob `syntax error in pattern`.
 */
export function parseDockerignore(text: string): IgnorePattern[] {
  const patterns: IgnorePattern[] = [];
  const lines = text.split('\n');
  if (lines[0]?.startsWith('\uFEFF')) lines[0] = lines[0].slice(1);
  for (const raw of lines) {
    // bufio.ScanLines drops one trailing \r.
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.startsWith('#')) continue;
    let p = trimGoSpace(line);
    if (p === '') continue;
    // ReadAll: clean the pattern without its `!` and drop a leading `/`.
    const invert = p.startsWith('!');
    if (invert) p = trimGoSpace(p.slice(1));
    if (p.length > 0) {
      p = goClean(p);
      if (p.length > 1 && p.startsWith('/')) p = p.slice(1);
    }
    // NewPatternMatcher then cleans the whole line again, `!` included (`!/` becomes `!`).
    let full = goClean(trimGoSpace(invert ? `!${p}` : p));
    const exclusion = full.startsWith('!');
    if (exclusion) {
      if (full.length === 1) throw contextError('illegal exclusion pattern: "!"');
      full = full.slice(1);
    }
    if (full === '.') continue;
    try {
      globToRegExpSource(full, { doubleStar: true });
    } catch (e) {
      if (e instanceof SlipwayError) throw contextError('syntax error in pattern');
      throw e;
    }
    patterns.push({ pattern: full, exclusion });
  }
  return patterns;
}

interface CompiledPattern extends IgnorePattern {
  readonly regex: RegExp;
  /** How many `/`-separated parts the pattern has: parents are matched at that depth only. */
  readonly depth: number;
}

/** Decides which context paths a list of `.dockerignore` patterns leaves out. */
export class IgnoreMatcher {
  private readonly patterns: readonly CompiledPattern[];

  constructor(patterns: readonly IgnorePattern[]) {
    this.patterns = patterns.map((p) => ({
      ...p,
      regex: new RegExp(`^${globToRegExpSource(p.pattern, { doubleStar: true })}$`, 'su'),
      depth: p.pattern.split('/').length,
    }));
  }

  /**
   * Docker's `PatternMatcher.Matches`: true if the last pattern that matches `relPath`
   * (or its parent directory taken at the pattern's depth: `build` matches `build/x/y`,
   * `a/b` matches `a/b/c/d`) is not an exception. `relPath` is `/`-separated and
   * relative to the context; the root itself never matches.
   */
  matches(relPath: string): boolean {
    if (this.patterns.length === 0) return false; // no .dockerignore: nothing is left out
    const file = normalizeRel(relPath);
    if (file === '') return false;
    const parentDirs = file.split('/').slice(0, -1);
    let matched = false;
    for (const p of this.patterns) {
      let match = p.regex.test(file);
      if (!match && parentDirs.length > 0 && p.depth <= parentDirs.length) {
        match = p.regex.test(parentDirs.slice(0, p.depth).join('/'));
      }
      if (match) matched = !p.exclusion;
    }
    return matched;
  }

  /**
   * True if an excluded directory must still be entered because some exception pattern
   * starts with its path (`!build/keep` for `build`): Docker compares the pattern text,
   * so an exception that starts with a wildcard never reopens a directory.
   */
  mayHaveExceptions(relDir: string): boolean {
    const dirSlash = `${normalizeRel(relDir)}/`;
    return this.patterns.some((p) => p.exclusion && `${p.pattern}/`.startsWith(dirSlash));
  }

  /**
   * True if Docker's context walk leaves `relPath` out of the build context: the path
   * matches, or one of its parent directories matches and has no exception below it (the
   * walk then never enters that directory). Use this for single lookups (COPY sources); a
   * walker can use `matches` and `mayHaveExceptions` directly.
   */
  isExcluded(relPath: string): boolean {
    const parts = normalizeRel(relPath).split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (this.matches(dir) && !this.mayHaveExceptions(dir)) return true;
    }
    return this.matches(relPath);
  }
}

function contextError(detail: string): SlipwayError {
  return new SlipwayError('ERR_CONTEXT_PATH', `error checking context: ${detail}`);
}

/** A relative, `/`-separated, clean path; '' for the context root. */
function normalizeRel(p: string): string {
  const c = goClean(p.replace(/^\/+/, ''));
  return c === '.' ? '' : c;
}

/** Go's unicode.IsSpace (JS `\s` differs at U+0085 and U+FEFF). */
function isGoSpace(ch: string): boolean {
  if ('\t\n\v\f\r \u0085\u00a0'.includes(ch)) return true;
  const cp = ch.codePointAt(0) ?? 0;
  return cp === 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp === 0x2028 || cp === 0x2029 ||
    cp === 0x202f || cp === 0x205f || cp === 0x3000;
}

/** Go's strings.TrimSpace (unicode.IsSpace at both ends). */
function trimGoSpace(s: string): string {
  const chars = Array.from(s);
  let start = 0;
  let end = chars.length;
  while (start < end && isGoSpace(chars[start]!)) start++;
  while (end > start && isGoSpace(chars[end - 1]!)) end--;
  return chars.slice(start, end).join('');
}

/** Go's path/filepath.Clean on Unix: no `.`, no `x/..`, no doubled or trailing `/`. */
function goClean(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const joined = (rooted ? '/' : '') + out.join('/');
  return joined === '' ? '.' : joined;
}

/** The patterns of `<dir>/.dockerignore` (none when there is no such file); a pipe or device there is refused, never opened. */
export async function readDockerignore(dir: string): Promise<IgnorePattern[]> {
  return parseDockerignore((await readRegularText(`${dir}/.dockerignore`, '.dockerignore')) ?? '');
}
