import fs from 'node:fs/promises';
import path from 'node:path';
import { parseDockerignore, IgnoreMatcher } from '../context/dockerignore.js';
import type { StatCache } from '../cache/context-digest.js';
import { hashApi, initHash } from '../cache/key.js';
import type { StoreLayout } from '../store/layout.js';
import { writeFileAtomic } from '../fs.js';
import { readRegularText } from '../context/special-file.js';

/** A local build context: its folder, its .dockerignore rules and the stat cache of its files. */
export interface BuildContext {
  dir: string;
  isIgnored: (rel: string) => boolean;
  /** Context-relative paths excluded by .dockerignore below `relDir` (for the workers' walks). */
  statCache: StatCache;
  saveStatCache: () => Promise<void>;
}

/** Opens a context folder: reads `.dockerignore` and the stat cache kept for this folder. */
export async function loadContext(dir: string, layout: StoreLayout): Promise<BuildContext> {
  const abs = path.resolve(dir);
  const st = await fs.stat(abs).catch(() => undefined);
  if (!st?.isDirectory()) throw new Error(`unable to prepare context: path "${dir}" not found`);
  const ignoreText = (await readRegularText(path.join(abs, '.dockerignore'), '.dockerignore')) ?? '';
  const matcher = new IgnoreMatcher(parseDockerignore(ignoreText));
  await initHash();
  const cacheFile = path.join(layout.statCacheDir, `${hashApi().h64ToString(abs)}.json`);
  let statCache: StatCache = {};
  try {
    statCache = JSON.parse(await fs.readFile(cacheFile, 'utf8')) as StatCache;
  } catch {
    statCache = {};
  }
  const ctx: BuildContext = {
    dir: abs,
    isIgnored: (rel) => matcher.isExcluded(rel),
    statCache,
    saveStatCache: async () => writeFileAtomic(cacheFile, JSON.stringify(ctx.statCache), 0o644, { fsync: false }),
  };
  return ctx;
}
