import fs from 'node:fs/promises';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { SlipwayError } from '../errors.js';
import { contextPath, digestSources, NeedsHashing, type SourceSpec, type SourcesDigest, type StatCache } from '../cache/context-digest.js';
import type { BuildRun } from './run-types.js';
import type { CopySelection } from './copy-select.js';

/** Heredoc bodies of COPY expand `$NAME` and `${NAME...}` but keep quotes and backslashes as written. */
export function expandVariablesOnly(text: string, lookup: (n: string) => string | undefined): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_m, n1: string | undefined, op: string | undefined, word: string | undefined, n2: string | undefined) => {
    const v = lookup((n1 ?? n2)!);
    if (op === '-') return v === undefined || v === '' ? (word ?? '') : v;
    if (op === '+') return v === undefined || v === '' ? '' : (word ?? '');
    return v ?? '';
  });
}

/**
 * ADD <url>: downloads into the build's scratch space (Docker does this on every build: the
 * content decides the cache hit). The file is named after the URL's last path component, gets
 * mode 0600 and the server's Last-Modified time, and is never unpacked.
 */
export async function downloadSource(url: string, dir: string, file: string, line: number): Promise<SourceSpec> {
  let res: Response;
  try {
    res = await fetch(url, { redirect: 'follow', signal: AbortSignal.timeout(10 * 60_000) });
  } catch (e) {
    throw new SlipwayError('ERR_FILE_NOT_FOUND', `${file}:${line}: ADD failed: error downloading ${url}: ${(e as Error).message}`, { line });
  }
  if (!res.ok || !res.body) {
    throw new SlipwayError('ERR_FILE_NOT_FOUND', `${file}:${line}: ADD failed: error downloading ${url}: ${res.status} ${res.statusText}`, { line });
  }
  const name = decodeURIComponent(new URL(url).pathname.split('/').filter(Boolean).pop() ?? '') || '__unnamed__';
  if (name === '..' || name === '.' || name.includes('/')) throw new SlipwayError('ERR_CONTEXT_PATH', `${file}:${line}: ADD failed: invalid file name in ${url}`, { line });
  const sub = path.join(dir, String(Math.random()).slice(2));
  await fs.mkdir(sub);
  const abs = path.join(sub, name);
  const { Readable } = await import('node:stream');
  const { pipeline } = await import('node:stream/promises');
  const { createWriteStream } = await import('node:fs');
  await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream), createWriteStream(abs, { mode: 0o600 }));
  await fs.chmod(abs, 0o600);
  const lm = res.headers.get('last-modified');
  if (lm && !Number.isNaN(Date.parse(lm))) await fs.utimes(abs, new Date(), new Date(Date.parse(lm)));
  return { rel: name, abs, url };
}


/**
 * Digests COPY/ADD sources. When the stat cache vouches for every file (a warm build), the
 * walk in this thread is all there is; otherwise file contents are hashed in the pool.
 */
export async function digestInPlaceOrPool(run: BuildRun, sources: SourceSpec[], sel: CopySelection): Promise<SourcesDigest> {
  const { ignored, implied } = await ignoredList(run, sources, sel);
  const ignoredSet = new Set(ignored);
  const impliedSet = new Set(implied);
  const isImplied = (rel: string): boolean => impliedSet.has(rel);
  try {
    return await digestSources(sources, (rel) => ignoredSet.has(rel), run.context.statCache, { cachedOnly: true, isImplied });
  } catch (e) {
    if (!(e instanceof NeedsHashing)) throw e;
  }
  const digest = await run.opts.executor.digest<SourcesDigest & { statCache: StatCache }>({ sources, ignored, implied, statCache: run.context.statCache });
  Object.assign(run.context.statCache, digest.statCache);
  return digest;
}

/**
 * Context-relative paths under the selected folders that the build does not see (a folder
 * left out hides all below it), and the excluded folders it sees only through an exception.
 */
async function ignoredList(run: BuildRun, sources: SourceSpec[], sel: CopySelection): Promise<{ ignored: string[]; implied: string[] }> {
  const out: string[] = [];
  const implied: string[] = [];
  const walk = (abs: string, rel: string, inSrc = ''): void => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = readdirSync(abs, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = rel === '.' ? e.name : `${rel}/${e.name}`;
      const below = inSrc === '' ? e.name : `${inSrc}/${e.name}`;
      if (run.context.isIgnored(r) || (sel.excluded(below) && !(e.isDirectory() && sel.reopens(below)))) {
        out.push(r);
        continue;
      }
      if (!e.isDirectory()) continue;
      if (run.context.isImplied(r)) implied.push(r);
      walk(path.join(abs, e.name), r, below);
    }
  };
  for (const s of sources) {
    if (!(await fs.stat(s.abs)).isDirectory()) continue;
    const rel = contextPath(s.rel); // as digestSources walks it
    if (s.url === undefined && rel !== '.' && run.context.isImplied(rel)) implied.push(rel);
    walk(s.abs, rel);
  }
  return { ignored: out, implied };
}
