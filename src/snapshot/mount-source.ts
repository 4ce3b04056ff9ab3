/**
 * What a `RUN --mount=type=bind` (or a cache mount's `from`) shows: a folder or file of an image
 * (its merged layer view) or of the build context, copied into the step's scratch space with the
 * owners the step's user namespace needs. A copy, because the source must never change: a
 * read-write bind's writes are discarded with the copy, and the layer folders and the context
 * stay as they are. Paths are resolved inside their root (a symlink pointing at `/etc` of the
 * host, or `../..`, stays inside), and nothing below is followed: symlinks are copied as links.
 * Named pipes, sockets and devices are skipped.
 */
import fs from 'node:fs/promises';
import { lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { LayerView } from './layer-view.js';
import { resolveInRoot } from './resolve-in-root.js';

/** A read-only tree to copy from: paths are relative to its root, `''` is the root. */
export interface SourceTree {
  lstat(rel: string): Stats | undefined;
  readdir(rel: string): string[] | undefined;
  /** The host file holding `rel`'s content. */
  hostPath(rel: string): string | undefined;
}

/** The merged view of an image's layer folders (top-most first), `source` resolved in it. */
export function layerTree(lowerDirs: string[], source: string): { tree: SourceTree; rel: string } {
  const view = new LayerView(lowerDirs);
  const rel = view.resolve(source).replace(/^\/+/, '');
  return {
    rel,
    tree: {
      lstat: (r) => view.lstat(r),
      readdir: (r) => view.readdir(r),
      hostPath: (r) => view.hostPath(r),
    },
  };
}

/** A context folder, `source` resolved inside it; `isIgnored` (context-relative) hides paths. */
export async function contextTree(dir: string, source: string, isIgnored: (rel: string) => boolean): Promise<{ tree: SourceTree; rel: string }> {
  const abs = await resolveInRoot(dir, source.replace(/^\/+/, '') || '.');
  const rel = path.relative(dir, abs);
  const hidden = (r: string) => r !== '' && isIgnored(r);
  const lstat = (r: string) => {
    if (hidden(r)) return undefined;
    try {
      return lstatSync(path.join(dir, r));
    } catch {
      return undefined;
    }
  };
  return {
    rel,
    tree: {
      lstat,
      readdir: (r) => (lstat(r)?.isDirectory() ? readdirSync(path.join(dir, r)).filter((n) => !hidden(r ? `${r}/${n}` : n)).sort() : undefined),
      hostPath: (r) => path.join(dir, r),
    },
  };
}

/** Owners on the copy: image owners shifted (`shift`), or one owner for everything (`fixed`). */
export type CopyOwners = { shift: (uid: number, gid: number) => { uid: number; gid: number } };

/**
 * Copies `rel` of `tree` to `dest` (which must not exist). Returns false when `rel` does not
 * exist. Modes are kept (set-id bits too), owners mapped by `owners`.
 */
export async function copyTree(tree: SourceTree, rel: string, dest: string, owners: CopyOwners): Promise<boolean> {
  const st = tree.lstat(rel);
  if (!st) return false;
  await copyEntry(tree, rel, st, dest, owners);
  return true;
}

async function copyEntry(tree: SourceTree, rel: string, st: Stats, dest: string, owners: CopyOwners): Promise<void> {
  const o = owners.shift(st.uid, st.gid);
  if (st.isDirectory()) {
    await fs.mkdir(dest);
    for (const name of tree.readdir(rel) ?? []) {
      const child = rel ? `${rel}/${name}` : name;
      const cst = tree.lstat(child);
      if (cst) await copyEntry(tree, child, cst, path.join(dest, name), owners);
    }
  } else if (st.isFile()) {
    await fs.copyFile(tree.hostPath(rel)!, dest, fs.constants.COPYFILE_FICLONE);
  } else if (st.isSymbolicLink()) {
    await fs.symlink(readlinkSync(tree.hostPath(rel)!), dest);
  } else {
    return; // pipes, sockets, devices, whiteouts: not copied
  }
  await fs.lchown(dest, o.uid, o.gid);
  // chown clears the set-id bits: the mode is set after it.
  if (!st.isSymbolicLink()) await fs.chmod(dest, st.mode & 0o7777);
}

/** A content digest of `rel` of `tree` (paths, types, modes, link targets, file contents), for cache keys. */
export async function digestTree(tree: SourceTree, rel: string): Promise<string> {
  const h = crypto.createHash('sha256');
  const walk = async (r: string, name: string): Promise<void> => {
    const st = tree.lstat(r);
    if (!st) return;
    h.update(`${name}\0${st.mode.toString(8)}\0`);
    if (st.isDirectory()) {
      for (const n of tree.readdir(r) ?? []) await walk(r ? `${r}/${n}` : n, `${name}/${n}`);
    } else if (st.isSymbolicLink()) {
      h.update(readlinkSync(tree.hostPath(r)!));
    } else if (st.isFile()) {
      h.update(crypto.createHash('sha256').update(await fs.readFile(tree.hostPath(r)!)).digest('hex'));
    }
    h.update('\n');
  };
  if (!tree.lstat(rel)) return 'missing';
  await walk(rel, '.');
  return h.digest('hex');
}
