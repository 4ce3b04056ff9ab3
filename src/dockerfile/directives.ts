import { dockerfileError } from '../errors.js';

/**
 * Parser directives (`# syntax=...`, `# escape=...`, `# check=...`): comment lines at the very
 * top of a Dockerfile, before any blank line, other comment or instruction. Only `syntax` is
 * judged here; `escape` is applied by the parser and `check` (lint rules) has no effect on
 * what is built.
 */
export interface Directives {
  /** The `syntax` value as written, if any. */
  syntax: { value: string; line: number } | undefined;
}

const DIRECTIVE = /^#[ \t]*([A-Za-z][A-Za-z0-9_-]*)[ \t]*=[ \t]*(.*?)[ \t]*$/;

/** Reads the directives at the top of a Dockerfile's text (lines are 1-based). */
export function readDirectives(text: string): Directives {
  const lines = text.split(/\r?\n/);
  if (lines[0]?.startsWith('\uFEFF')) lines[0] = lines[0].slice(1);
  const seen = new Set<string>();
  let syntax: Directives['syntax'];
  for (const [i, line] of lines.entries()) {
    const m = DIRECTIVE.exec(line);
    if (!m) break;
    const name = m[1]!.toLowerCase();
    // A directive given twice ends the directives (BuildKit treats the second as a comment).
    if (seen.has(name)) break;
    seen.add(name);
    if (name === 'syntax') syntax = { value: m[2]!, line: i + 1 };
  }
  return { syntax };
}

/**
 * The front-end images that name the Dockerfile syntax Slipway implements itself:
 * `docker/dockerfile` with no tag or a 1.x tag (`1`, `1.7`, `1.7.1`, each optionally
 * `-labs`), optionally prefixed by `docker.io/` (or `docker.io/library/`-less forms of it)
 * and optionally pinned by a digest after the tag.
 */
const BUILT_IN = /^(?:(?:docker\.io|index\.docker\.io|registry-1\.docker\.io)\/)?docker\/dockerfile(?::1(?:\.\d+){0,2}(?:-labs)?)?(?:@sha256:[0-9a-f]{64})?$/;

/**
 * Checks the `# syntax=` directive: the built-in front end is accepted; any other front-end
 * image is refused, since Slipway cannot run an external front end.
 */
export function checkSyntaxDirective(d: Directives, file: string): void {
  if (!d.syntax) return;
  const v = d.syntax.value;
  if (BUILT_IN.test(v)) return;
  throw dockerfileError('ERR_DOCKERFILE_SYNTAX', file, d.syntax.line,
    `unsupported front end "${v}" in the syntax directive: Slipway implements the Dockerfile syntax itself ` +
    '(docker/dockerfile:1, 1.x, 1.x.y and 1.x-labs) and cannot run another front-end image; remove the line or name docker/dockerfile:1');
}
