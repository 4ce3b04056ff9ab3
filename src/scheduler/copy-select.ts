import path from 'node:path';
import { dockerfileError, SlipwayError } from '../errors.js';
import { IgnoreMatcher, parseDockerignore } from '../context/dockerignore.js';
import type { CopyStep } from '../dockerfile/step.js';
import { checkAddSources } from '../dockerfile/copy-flags.js';

/**
 * What `COPY --exclude` and `COPY --parents` change in the choice of files, as BuildKit's
 * Dockerfile 1.7 syntax defines them:
 *
 * - `--exclude=PATTERN` (any number; `.dockerignore` pattern syntax with `**` and `!`
 *   exceptions) leaves out entries below a copied folder whose path relative to that folder
 *   matches; an excluded folder is left out with all it holds. A wildcard source's matches
 *   are also left out when the pattern matches the match's name (`COPY --exclude=*.txt hom* /d/`).
 *   A source named without a wildcard is always copied.
 * - `--parents` keeps each source's path below the context: `COPY --parents a/b/c.txt /d/`
 *   writes `/d/a/b/c.txt`. A `/./` in a source is the pivot: only what follows it is kept
 *   (`COPY --parents a/./b/c.txt /d/` writes `/d/b/c.txt`). As in BuildKit, every source is
 *   then a pattern.
 */
export interface CopySelection {
  /** Splits a source at its `/./` pivot (with --parents); `clean` is the whole path, normalized. */
  split(raw: string): { clean: string; pivot: string };
  /** Drops the wildcard matches an --exclude pattern names. */
  filterMatches(rels: string[]): string[];
  /** True if `relInSource` (a path below the copied folder `sourceRel`) is excluded. */
  excluded(relInSource: string): boolean;
  /** True if an excluded folder must still be entered (an `!` exception may reopen it). */
  reopens(relInSource: string): boolean;
  /** With --parents: where a selected source lands (below `dest`), else undefined. */
  destOf(dest: string, rel: string, pivot: string): string | undefined;
  /** The key inputs this adds (nothing when neither flag is given). */
  keyExtra: { parents?: true; exclude?: string[] };
}

/**
 * Builds the selection rules of a COPY/ADD from its (expanded) --exclude patterns and --parents,
 * after checking its flags against its expanded sources (`--checksum`, git sources).
 */
export function copySelection(step: CopyStep, expanded: { exclude: string[]; sources: string[]; checksum: string | undefined }, file: string): CopySelection {
  checkAddSources({ ...step, checksum: expanded.checksum }, expanded.sources, file, true);
  const patterns = expanded.exclude;
  let matcher: IgnoreMatcher | undefined;
  if (patterns.length > 0) {
    try {
      matcher = new IgnoreMatcher(parseDockerignore(patterns.join('\n')));
    } catch (e) {
      if (e instanceof SlipwayError) throw dockerfileError('ERR_DOCKERFILE_SYNTAX', file, step.line, `${step.kind} --exclude: ${e.message.replace(/^error checking context: /, '')}`);
      throw e;
    }
  }
  const parents = step.parents === true;
  return {
    split(raw) {
      const noLead = raw.replace(/^\/+/, '');
      const at = parents ? noLead.indexOf('/./') : -1;
      const pivotRaw = at >= 0 ? noLead.slice(0, at) : '';
      const pivot = pivotRaw === '' ? '' : path.posix.normalize(pivotRaw).replace(/^\.$/, '');
      return { clean: path.posix.normalize(noLead || '.'), pivot };
    },
    filterMatches(rels) {
      if (!matcher) return rels;
      return rels.filter((r) => !matcher!.matches(path.posix.basename(r)));
    },
    excluded: (rel) => matcher?.matches(rel) ?? false,
    reopens: (rel) => matcher?.mayHaveExceptions(rel) ?? false,
    destOf(dest, rel, pivot) {
      if (!parents) return undefined;
      const below = pivot === '' ? rel : path.posix.relative(pivot, rel);
      // `a/./../b` normalizes out of its pivot: it would land outside the destination.
      if (below === '..' || below.startsWith('../')) throw dockerfileError('ERR_CONTEXT_PATH', file, step.line, `${step.kind} --parents: ${rel} is not below its pivot ${pivot}/./`);
      if (below === '' || below === '.') return dest.endsWith('/') ? dest : `${dest}/`;
      return path.posix.join(dest, below);
    },
    keyExtra: { ...(parents ? { parents: true as const } : {}), ...(patterns.length > 0 ? { exclude: patterns } : {}) },
  };
}
