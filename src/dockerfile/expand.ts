/**
 * Dockerfile word processing as Docker 20.10's legacy builder does it (the shell lexer it
 * vendors from BuildKit v0.8, `frontend/dockerfile/shell/lex.go`), plus the parser's word
 * split (`parseWords` in `parser/line_parsers.go`). Pure functions: no environment, no I/O.
 *
 * Supported substitutions: `$A`, `${A}`, `${A:-w}`, `${A:+w}`, `${A:?w}`, `${A?w}` and, beyond
 * Docker 20.10 (which rejects them with "missing ':' in substitution"), the POSIX forms
 * `${A-w}` and `${A+w}` that later BuildKit accepts.
 */
import { SlipwayError } from '../errors.js';
import { goQuote } from './go-format.js';

/** Looks a variable up; `undefined` means unset (distinct from set-but-empty). */
export type VarLookup = (name: string) => string | undefined;

/**
 * Expands variables and removes quotes and escapes in one Dockerfile word (Docker's
 * `ProcessWord`). Unset variables expand to the empty string. Throws
 * `SlipwayError('ERR_BAD_SUBSTITUTION')` with Docker's text, e.g.
 * `failed to process "${B": missing ':' in substitution`.
 */
export function expandWord(word: string, lookup: VarLookup, escape = '\\'): string {
  return processSource(word, lookup, escape).text;
}

/**
 * Like `expandWord`, but splits the result into words on unquoted, unescaped whitespace
 * (Docker's `ProcessWords`). Whitespace produced by a variable's value splits too; quoted
 * whitespace does not. Empty words (e.g. from `""`) are dropped, as Docker drops them.
 */
export function expandWords(text: string, lookup: VarLookup, escape = '\\'): string[] {
  return processSource(text, lookup, escape).words;
}

/**
 * Splits an instruction's arguments on whitespace outside quotes, WITHOUT expansion and
 * WITHOUT removing quotes or escapes (Docker's parser `parseWords`): `a="x y" b=c` gives
 * `a="x y"` and `b=c`. An escape character at the very end of the text is dropped; an
 * unterminated quote runs to the end of the text.
 */
export function splitWords(text: string, escape = '\\'): string[] {
  const chars = Array.from(text);
  const words: string[] = [];
  let word = '';
  let inWord = false;
  // blankOK: a word that had quotes counts even if empty (cannot happen with quotes kept,
  // but mirrors the parser so the rule stays visible).
  let blankOK = false;
  let quote: string | undefined;
  for (let i = 0; i < chars.length; i++) {
    let ch = chars[i]!;
    if (quote === undefined) {
      if (isGoSpace(ch)) {
        if (inWord && (blankOK || word.length > 0)) words.push(word);
        word = '';
        inWord = false;
        blankOK = false;
        continue;
      }
      inWord = true;
      if (ch === "'" || ch === '"') {
        quote = ch;
        blankOK = true;
      } else if (ch === escape) {
        if (i + 1 === chars.length) continue; // an escape at the very end is dropped
        // Outside quotes the escape and the escaped character are both kept, even a quote.
        word += ch;
        ch = chars[++i]!;
      }
      word += ch;
      continue;
    }
    if (ch === quote) {
      quote = undefined;
    } else if (ch === escape && quote !== "'") {
      // Inside double quotes the escape protects the next character (even the quote).
      if (i + 1 === chars.length) {
        quote = undefined;
        continue;
      }
      word += ch;
      ch = chars[++i]!;
    }
    word += ch;
  }
  if (inWord && (blankOK || word.length > 0)) words.push(word);
  return words;
}

/** POSIX special parameters; Docker never sets them, but `$@x` reads `@` as the name. */
const SPECIAL_PARAMS = new Set(['@', '*', '#', '?', '-', '$', '!', '0']);
const LETTER = /^\p{L}$/u;
const DIGIT = /^\p{Nd}$/u;

/** Go's unicode.IsSpace, which Docker uses for splitting (JS `\s` differs at U+0085 and U+FEFF). */
export function isGoSpace(ch: string): boolean {
  switch (ch) {
    case '\t': case '\n': case '\v': case '\f': case '\r': case ' ': case '\u0085': case '\u00a0':
      return true;
  }
  const cp = ch.codePointAt(0) ?? 0;
  if (cp < 0x100) return false;
  return cp === 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp === 0x2028 || cp === 0x2029 ||
    cp === 0x202f || cp === 0x205f || cp === 0x3000;
}

/** A lexer failure before Docker's `failed to process %q: ` prefix is added. */
class LexError extends Error {}

interface Processed {
  text: string;
  words: string[];
}

/**
 * How deep `${a:-${b:-...}}` may nest. Docker's Go lexer has no limit (its stacks grow); ours
 * recurses once per level, so a hostile 56 KB word would overflow the JavaScript stack. No
 * real Dockerfile comes near this.
 */
export const MAX_SUBSTITUTION_DEPTH = 256;

/** The quoted source of an error message: whole when short, else its start (a hostile word can be 64 KiB). */
function quotedSource(source: string): string {
  const chars = Array.from(source);
  return chars.length <= 80 ? goQuote(source) : `${goQuote(chars.slice(0, 60).join(''))}…`;
}

function processSource(source: string, lookup: VarLookup, escape: string): Processed {
  const lexer = new WordLexer(source, lookup, escape);
  try {
    return lexer.processStopOn(undefined);
  } catch (e) {
    if (e instanceof DepthError) throw new SlipwayError('ERR_BAD_SUBSTITUTION', `failed to process ${quotedSource(source)}: ${e.message}`);
    if (e instanceof LexError) {
      throw new SlipwayError('ERR_BAD_SUBSTITUTION', `failed to process ${goQuote(source)}: ${e.message}`);
    }
    throw e;
  }
}

/** Too many nested substitutions (not a Docker error: Docker has no limit). */
class DepthError extends LexError {}

/** Docker's `wordsStruct`: collects words while the lexer writes the joined result. */
class WordCollector {
  private word = '';
  private inWord = false;
  readonly words: string[] = [];

  /** A character that splits words when it is whitespace (unquoted text, expanded values). */
  addChar(ch: string): void {
    if (isGoSpace(ch)) {
      if (this.inWord && this.word.length > 0) {
        this.words.push(this.word);
        this.word = '';
        this.inWord = false;
      }
    } else {
      this.addRaw(ch);
    }
  }

  addString(s: string): void {
    for (const ch of s) this.addChar(ch);
  }

  /** Quoted or escaped text: never splits. */
  addRaw(s: string): void {
    this.word += s;
    this.inWord = true;
  }

  finish(): string[] {
    if (this.word.length > 0) {
      this.words.push(this.word);
      this.word = '';
      this.inWord = false;
    }
    return this.words;
  }
}

/** Walks one word code point by code point, as Go's text/scanner Peek/Next do. */
class WordLexer {
  private readonly chars: string[];
  private pos = 0;
  private depth = 0;

  constructor(source: string, private readonly lookup: VarLookup, private readonly escape: string) {
    this.chars = Array.from(source);
  }

  private peek(): string | undefined {
    return this.chars[this.pos];
  }

  private next(): string | undefined {
    const ch = this.chars[this.pos];
    if (ch !== undefined) this.pos++;
    return ch;
  }

  /** Processes up to `stop` (consumed) or the end of input when `stop` is undefined. */
  processStopOn(stop: string | undefined): Processed {
    let text = '';
    const words = new WordCollector();
    for (let ch = this.peek(); ch !== undefined; ch = this.peek()) {
      if (stop !== undefined && ch === stop) {
        this.next();
        return { text, words: words.finish() };
      }
      if (ch === "'" || ch === '"' || ch === '$') {
        const part = ch === "'" ? this.singleQuoted() : ch === '"' ? this.doubleQuoted() : this.dollar();
        text += part;
        // Expanded values split into words; quoted text never does.
        if (ch === '$') words.addString(part);
        else words.addRaw(part);
        continue;
      }
      let c = this.next()!;
      if (c === this.escape) {
        const escaped = this.next();
        if (escaped === undefined) break; // an escape at the end of the word is dropped
        c = escaped;
        words.addRaw(c);
      } else {
        words.addChar(c);
      }
      text += c;
    }
    if (stop !== undefined) throw new LexError(`unexpected end of statement while looking for matching ${stop}`);
    return { text, words: words.finish() };
  }

  /** `'...'`: everything literal; a single quote cannot be escaped inside. */
  private singleQuoted(): string {
    this.next();
    let out = '';
    for (;;) {
      const ch = this.next();
      if (ch === undefined) throw new LexError('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") return out;
      out += ch;
    }
  }

  /** `"..."`: `$` expands; the escape character escapes only `"`, `$` and itself. */
  private doubleQuoted(): string {
    this.next();
    let out = '';
    for (;;) {
      const ch = this.peek();
      if (ch === undefined) throw new LexError('unexpected end of statement while looking for matching double-quote');
      if (ch === '"') {
        this.next();
        return out;
      }
      if (ch === '$') {
        out += this.dollar();
        continue;
      }
      let c = this.next()!;
      if (c === this.escape) {
        const after = this.peek();
        if (after === undefined) continue; // dropped; the missing quote is reported next
        if (after === '"' || after === '$' || after === this.escape) c = this.next()!;
      }
      out += c;
    }
  }

  /** `$name`, `${name}` or `${name<modifier>word}`; the `$` is at the cursor. */
  private dollar(): string {
    this.next();
    if (this.peek() !== '{') {
      const name = this.name();
      // `$` followed by a non-name character (or nothing) stays a literal `$`.
      if (name === '') return '$';
      return this.lookup(name) ?? '';
    }
    this.next();
    const first = this.peek();
    if (first === undefined) throw new LexError("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw new LexError('syntax error: bad substitution');
    const name = this.name();
    const ch = this.next();
    switch (ch) {
      case '}':
        return this.lookup(name) ?? '';
      case '?': {
        const word = this.modifierWord();
        const value = this.lookup(name);
        if (value === undefined) throw new LexError(`${name}: ${word || 'is not allowed to be unset'}`);
        return value;
      }
      case '-': case '+': {
        // POSIX forms without the colon: only an unset variable counts as missing.
        const word = this.modifierWord();
        const value = this.lookup(name);
        if (ch === '-') return value === undefined ? word : value;
        return value === undefined ? '' : word;
      }
      case ':':
        return this.colonModifier(name);
      default:
        // Docker 20.10's text for `${A`, `${A#x}`, `${.}` and every other form.
        throw new LexError("missing ':' in substitution");
    }
  }

  /** `${name:-w}`, `${name:+w}`, `${name:?w}`: an empty value counts as unset. */
  private colonModifier(name: string): string {
    const modifier = this.next();
    // Docker reads the word before looking at the modifier, so a missing `}` wins.
    const word = this.modifierWord();
    const value = this.lookup(name);
    switch (modifier) {
      case '-':
        return value ? value : word;
      case '+':
        return value ? word : '';
      case '?':
        if (value === undefined) throw new LexError(`${name}: ${word || 'is not allowed to be unset'}`);
        if (value === '') throw new LexError(`${name}: ${word || 'is not allowed to be empty'}`);
        return value;
      default:
        throw new LexError(`unsupported modifier (${modifier ?? ''}) in substitution`);
    }
  }

  /** The word of a modifier, itself processed (nested `${...}`, quotes), up to `}`. */
  private modifierWord(): string {
    if (++this.depth > MAX_SUBSTITUTION_DEPTH) throw new DepthError(`variable substitutions nested more than ${MAX_SUBSTITUTION_DEPTH} deep`);
    try {
      return this.processStopOn('}').text;
    } catch (e) {
      if (e instanceof LexError && !(e instanceof DepthError) && this.peek() === undefined) throw new LexError("syntax error: missing '}'");
      throw e;
    } finally {
      this.depth--;
    }
  }

  /** A variable name: letters, digits, `_`; or all leading digits; or one special parameter. */
  private name(): string {
    let name = '';
    for (let ch = this.peek(); ch !== undefined; ch = this.peek()) {
      if (name === '' && DIGIT.test(ch)) {
        while (this.peek() !== undefined && DIGIT.test(this.peek()!)) name += this.next()!;
        return name;
      }
      if (name === '' && SPECIAL_PARAMS.has(ch)) {
        this.next();
        return ch;
      }
      if (!LETTER.test(ch) && !DIGIT.test(ch) && ch !== '_') break;
      name += this.next()!;
    }
    return name;
  }
}
