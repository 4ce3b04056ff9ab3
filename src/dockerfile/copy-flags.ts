import { dockerfileError, type SlipwayError } from '../errors.js';
import type { CopyStep } from './step.js';

/**
 * The rules BuildKit's Dockerfile front end applies to COPY/ADD flags before anything runs:
 * `--checksum` needs exactly one HTTP(S) source and a well-formed digest; git sources (and so
 * `--keep-git-dir`) are refused, since a build here has no network to clone from.
 */

/** `sha256:<64 hex>` (also sha384/sha512, as OCI's digest.Parse accepts). */
const DIGEST = /^(sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128})$/;

/** True for the git sources BuildKit's ADD would clone (`git@host:repo`, `git://`, `ssh://`, `https://…/x.git[#ref]`). */
export function isGitSource(src: string): boolean {
  if (/^(git|ssh|git\+ssh|git\+https?):\/\//i.test(src)) return true;
  if (/^[A-Za-z0-9_.-]+@[A-Za-z0-9.-]+:/.test(src)) return true;
  const m = /^https?:\/\/[^#?]*?\.git(?:[#?].*)?$/i.exec(src);
  return m !== null || /^https?:\/\/[^#]*\.git\/?#/.test(src);
}

/** True for `http://` and `https://` sources (git URLs excluded). */
export function isHttpSource(src: string): boolean {
  return /^https?:\/\//i.test(src) && !isGitSource(src);
}

/**
 * Checks the flags of a COPY/ADD whose sources are known: literal ones at parse time, all of
 * them again after expansion. `sources` are the (expanded, if `expanded`) source words.
 */
export function checkAddSources(step: CopyStep, sources: string[], file: string, expanded: boolean): void {
  const fail = (detail: string): SlipwayError => dockerfileError('ERR_DOCKERFILE_SYNTAX', file, step.line, detail);
  const known = (s: string) => expanded || !s.includes('$');
  for (const s of sources) {
    if (!known(s) || !isGitSource(s)) continue;
    if (step.kind === 'COPY') continue; // COPY treats it as a path (and fails to find it)
    throw fail(`ADD failed: git sources are not supported (${s}): Slipway cannot clone a repository (no git fetch built in, no network here); clone it into the build context and COPY it`);
  }
  if (step.keepGitDir) {
    throw fail('ADD --keep-git-dir is not supported: it applies to git sources, and Slipway cannot clone one (no git fetch built in, no network here); clone the repository into the build context and COPY it');
  }
  if (step.checksum === undefined) return;
  if (sources.length !== 1) throw fail("checksum can't be specified for multiple sources");
  if (known(sources[0]!) && !isHttpSource(sources[0]!)) throw fail("checksum can't be specified for non-HTTP(S) sources");
  if (known(step.checksum) && !DIGEST.test(step.checksum)) throw fail(`invalid checksum digest format: ${step.checksum} (expected sha256:<64 hex digits>)`);
}

/** Parse-time checks of COPY/ADD flags (values with `$` are checked again after expansion). */
export function checkCopyFlags(step: CopyStep, file: string): void {
  const fail = (detail: string): SlipwayError => dockerfileError('ERR_DOCKERFILE_SYNTAX', file, step.line, detail);
  checkAddSources(step, step.sources, file, false);
  if (step.parents && step.from !== undefined) throw fail('COPY --parents with --from is not supported: --parents copies from the build context only');
  if ((step.exclude?.length ?? 0) > 0 && step.from !== undefined) throw fail(`${step.kind} --exclude with --from is not supported: --exclude filters files of the build context only`);
  if ((step.parents || (step.exclude?.length ?? 0) > 0) && step.heredocs.length > 0) throw fail(`${step.kind} --parents and --exclude do not apply to heredoc sources`);
  for (const p of step.exclude ?? []) if (p.trim() === '') throw fail(`${step.kind} --exclude needs a pattern`);
}
