import fs from 'node:fs/promises';
import path from 'node:path';
import { readDockerignore, IgnoreMatcher } from './dockerignore.js';
import { ContextSelection } from './context-selection.js';
import type { StatCache } from '../cache/context-digest.js';
import { hashApi, initHash } from '../cache/key.js';
import type { StoreLayout } from '../store/layout.js';
import { writeFileAtomic } from '../fs.js';

/** A local build context: its folder, its .dockerignore rules and the stat cache of its files. */
export interface BuildContext {
  dir: string;
  /** True when the build does not see the context-relative path (`.dockerignore`, as Docker applies it). */
  isIgnored: (rel: string) => boolean;
  /**
   * True for an excluded folder the build sees only because an exception (`!dir/keep`) brought
   * back something below it: Docker's daemon has it as a 0755 root folder made while unpacking.
   */
  isImplied: (rel: string) => boolean;
  statCache: StatCache;
  saveStatCache: () => Promise<void>;
}

/** Opens a context folder: reads `.dockerignore` and the stat cache kept for this folder. */
export async function loadContext(dir: string, layout: StoreLayout): Promise<BuildContext> {
  const abs = path.resolve(dir);
  const st = await fs.stat(abs).catch(() => undefined);
  if (!st?.isDirectory()) throw new Error(`unable to prepare context: path "${dir}" not found`);
  const selection = new ContextSelection(abs, new IgnoreMatcher(await readDockerignore(abs)));
  await initHash();
  const cacheFile = path.join(layout.statCacheDir, `${hashApi().h64ToString(abs)}.json`);
  let statCache: StatCache = {};
  // What the file held: an unchanged cache (a warm build of an untouched context) is not written again.
  let saved = '';
  try {
    saved = await fs.readFile(cacheFile, 'utf8');
    statCache = JSON.parse(saved) as StatCache;
  } catch {
    statCache = {};
  }
  const ctx: BuildContext = {
    dir: abs,
    isIgnored: (rel) => !selection.isPresent(rel),
    isImplied: (rel) => selection.isImplied(rel),
    statCache,
    saveStatCache: async () => {
      const text = JSON.stringify(ctx.statCache);
      if (text === saved) return;
      await writeFileAtomic(cacheFile, text, 0o644, { fsync: false });
      saved = text;
    },
  };
  return ctx;
}
