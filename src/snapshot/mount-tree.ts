/**
 * A cache mount's folder as plain data, for sharing it beyond one store: every path (relative,
 * `/`-separated) with its type, mode, owner, mtime, size and content digest (a symlink's target).
 * Scans never follow a symlink, and a file is read only through a descriptor whose real path is
 * checked to lie inside the folder, so a step that swaps a folder for a symlink while we read
 * cannot make the host read (and publish) a file from outside the mount. The calls are
 * synchronous: a mount is thousands of small files, and the thread pool's round trips per call
 * cost more than the calls themselves.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

/** One path of a tree: `f` file (h = sha256 hex), `d` folder (h = ''), `l` symlink (h = its target). */
export interface TreeEntry { t: 'f' | 'd' | 'l'; m: number; u: number; g: number; mt: number; s: number; h: string }

/** A tree: relative path -> entry (the root folder itself is not an entry). */
export type Tree = Record<string, TreeEntry>;

/** A file's bytes, read through `openInside`. */
export interface ReadFile { data: Buffer; entry: TreeEntry }

const SAFE_SEGMENT = /^[^/\0]+$/;

/** True for a relative path that stays inside its folder: no `..`, `.`, empty part, NUL or leading `/`. */
export function isSafeRel(rel: string): boolean {
  if (rel.length === 0 || rel.length > 4096) return false;
  return rel.split('/').every((p) => SAFE_SEGMENT.test(p) && p !== '.' && p !== '..');
}

/** Files are equal when content, mode, owner and mtime (to the ms, rounded) are; folders ignore mtime; links ignore mode. */
export function sameEntry(a: TreeEntry | undefined, b: TreeEntry | undefined): boolean {
  if (!a || !b || a.t !== b.t || a.h !== b.h || a.u !== b.u || a.g !== b.g) return false;
  if (a.t === 'l') return true;
  if (a.m !== b.m) return false;
  return a.t === 'd' || a.mt === b.mt;
}

function entryOf(st: { mode: number; uid: number; gid: number; mtimeMs: number; size: number }, t: TreeEntry['t'], h: string): TreeEntry {
  return { t, m: st.mode & 0o7777, u: st.uid, g: st.gid, mt: Math.round(st.mtimeMs), s: t === 'f' ? st.size : 0, h };
}

/**
 * Opens `rel` below `root` (a real path) for reading, refusing anything whose descriptor does
 * not resolve inside `root` or is not a regular file, and reads it whole.
 */
export function readInside(root: string, rel: string): ReadFile | undefined {
  let fd: number;
  try {
    fd = openSync(path.join(root, rel), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch {
    return undefined;
  }
  try {
    if (readlinkSync(`/proc/self/fd/${fd}`) !== path.join(root, rel)) return undefined;
    const st = fstatSync(fd);
    if (!st.isFile()) return undefined;
    const data = readFileSync(fd);
    return { data, entry: { ...entryOf(st, 'f', sha256(data)), s: data.length } };
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

function sha256(data: Uint8Array): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/**
 * The tree of `dir` now. A file whose stat matches its entry in `known` keeps that entry's
 * digest (as git's index does), so a scan after a small change reads only what changed.
 * Sockets, fifos and devices are left out.
 */
export function scanTree(dir: string, known: Tree = {}): Tree {
  const root = realpathSync(dir);
  const out: Tree = {};
  const lstat = (p: string) => lstatSync(p, { throwIfNoEntry: false });
  const walk = (rel: string): void => {
    let names: string[];
    try {
      names = readdirSync(rel ? path.join(root, rel) : root);
    } catch {
      return;
    }
    for (const name of names.sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = lstat(path.join(root, r));
      if (!st) continue;
      if (st.isDirectory()) {
        out[r] = entryOf(st, 'd', '');
        walk(r);
      } else if (st.isSymbolicLink()) {
        try {
          out[r] = entryOf(st, 'l', readlinkSync(path.join(root, r)));
        } catch { /* gone meanwhile */ }
      } else if (st.isFile()) {
        const k = known[r];
        const e = entryOf(st, 'f', k?.h ?? '');
        if (k && sameEntry(k, e) && k.s === e.s) out[r] = e;
        else {
          const f = readInside(root, r);
          if (f) out[r] = f.entry;
        }
      }
    }
  };
  walk('');
  return out;
}

/** The paths of `now` that are new or differ from `base`, and the paths of `base` gone from `now`. */
export function diffTree(base: Tree, now: Tree): { changed: string[]; deleted: string[] } {
  const changed = Object.keys(now).filter((p) => !sameEntry(base[p], now[p]) || (now[p]!.t === 'f' && base[p]!.s !== now[p]!.s));
  const deleted = Object.keys(base).filter((p) => !(p in now));
  return { changed, deleted };
}
