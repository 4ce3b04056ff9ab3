import fs from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { initHash } from './key.js';

/** One file the COPY selected, as it enters the cache key (never its mtime). */
export interface DigestEntry {
  /** Path relative to the source it was selected by (`.` for a lone file). */
  path: string;
  type: 'file' | 'dir' | 'symlink';
  /** Permission bits as they will be copied (Docker's legacy builder drops setuid/setgid). */
  mode: number;
  link?: string;
  /** xxh64 of the content (files). */
  hash?: string;
}

/** The stat cache: absolute path -> identity and content hash. A file is re-read when any field changed. */
export type StatCache = Record<string, { size: number; mtimeNs: string; ctimeNs: string; ino: string; hash: string }>;

/** A selected source: its path relative to the context and what the COPY does with it. */
export interface SourceSpec {
  rel: string;
  /** Absolute host path (already resolved inside the context). */
  abs: string;
}

async function hashFile(file: string): Promise<string> {
  const h = (await initHash()).create64();
  for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest().toString(16).padStart(16, '0');
}

/**
 * Digests the sources of a COPY/ADD: for every selected entry its relative path, type, mode,
 * link target and content hash. Content comes from the stat cache when (size, mtime, ctime,
 * inode) are unchanged; ctime cannot be set back by `touch -d`, so a same-size rewrite with
 * its mtime restored is still re-read. `isIgnored` gets context-relative paths.
 */
export async function digestSources(
  sources: SourceSpec[],
  isIgnored: (rel: string) => boolean,
  statCache: StatCache,
): Promise<{ entries: DigestEntry[][]; summary: string; hashedBytes: number }> {
  let hashedBytes = 0;
  const cached = async (abs: string, st: import('node:fs').BigIntStats): Promise<string> => {
    const c = statCache[abs];
    const id = { size: Number(st.size), mtimeNs: st.mtimeNs.toString(), ctimeNs: st.ctimeNs.toString(), ino: st.ino.toString() };
    if (c && c.size === id.size && c.mtimeNs === id.mtimeNs && c.ctimeNs === id.ctimeNs && c.ino === id.ino) return c.hash;
    const hash = await hashFile(abs);
    hashedBytes += id.size;
    statCache[abs] = { ...id, hash };
    return hash;
  };
  const all: DigestEntry[][] = [];
  for (const src of sources) {
    const list: DigestEntry[] = [];
    // A source named in the Dockerfile is followed if it is a symlink (resolved by the caller).
    const st = await fs.stat(src.abs, { bigint: true });
    if (st.isDirectory()) {
      await walk(src.abs, src.rel, '.', list, isIgnored, cached);
    } else {
      list.push({ path: '.', type: 'file', mode: Number(st.mode) & 0o1777, hash: await cached(src.abs, st) });
    }
    all.push(list);
  }
  const summary = crypto.createHash('sha256').update(JSON.stringify(all)).digest('hex');
  return { entries: all, summary, hashedBytes };
}

async function walk(
  absDir: string, relCtx: string, relSrc: string, out: DigestEntry[], isIgnored: (rel: string) => boolean,
  cached: (abs: string, st: import('node:fs').BigIntStats) => Promise<string>,
): Promise<void> {
  const st = await fs.lstat(absDir, { bigint: true });
  out.push({ path: relSrc, type: 'dir', mode: Number(st.mode) & 0o1777 });
  const names = (await fs.readdir(absDir)).sort();
  for (const name of names) {
    const rel = relCtx === '.' || relCtx === '' ? name : `${relCtx}/${name}`;
    if (isIgnored(rel)) continue;
    const abs = path.join(absDir, name);
    const r = relSrc === '.' ? name : `${relSrc}/${name}`;
    const est = await fs.lstat(abs, { bigint: true });
    if (est.isDirectory()) await walk(abs, rel, r, out, isIgnored, cached);
    else if (est.isSymbolicLink()) out.push({ path: r, type: 'symlink', mode: 0o777, link: await fs.readlink(abs) });
    else if (est.isFile()) out.push({ path: r, type: 'file', mode: Number(est.mode) & 0o1777, hash: await cached(abs, est) });
  }
}
