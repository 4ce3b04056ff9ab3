/**
 * The files of a cache mount's change as a tar (`packFiles`), read back with every file's
 * sha256 checked (`unpackFiles`), and a tree made true in a folder (`applyTree`). The tar's
 * names are only looked up, never used as paths; the folder's own content (written by steps,
 * so hostile) is never followed: a symlink or file where a folder should be is replaced, and
 * nothing is removed below a symlink.
 */
import fs from 'node:fs';
import { createReadStream, createWriteStream } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import { extract as tarExtract, pack as tarPack } from 'tar-stream';
import { SlipwayError } from '../errors.js';
import { isSafeRel, readInside, type Tree, type TreeEntry } from './mount-tree.js';

/**
 * Writes the files `rels` of `dir` (as they are now) to the tar `out`; returns their entries as
 * read (a file changed since it was scanned is taken as it is now; one gone is left out).
 */
export async function packFiles(dir: string, rels: string[], out: string): Promise<Tree> {
  const root = fs.realpathSync(dir);
  const p = tarPack();
  const written = pipeline(p, createWriteStream(out, { mode: 0o600 }));
  const got: Tree = {};
  try {
    for (const rel of rels) {
      const f = readInside(root, rel);
      if (!f) continue;
      await new Promise<void>((resolve, reject) => p.entry({ name: rel, size: f.data.length, mode: 0o644, mtime: new Date(0) }, f.data, (e) => (e ? reject(e) : resolve())));
      got[rel] = f.entry;
    }
    p.finalize();
  } catch (e) {
    p.destroy(e as Error);
  }
  await written;
  return got;
}

/**
 * Extracts from the tar `tarFile` the entries named in `want` (name -> sha256 hex) to files in
 * `stageDir`; a wrong digest fails the whole restore. Returns name -> staged file.
 */
export async function unpackFiles(tarFile: string, want: ReadonlyMap<string, string>, stageDir: string): Promise<Map<string, string>> {
  const ex = tarExtract();
  const feeding = pipeline(createReadStream(tarFile), ex);
  feeding.catch(() => undefined);
  const staged = new Map<string, string>();
  for await (const entry of ex) {
    const name = entry.header.name;
    const expected = want.get(name);
    if (entry.header.type !== 'file' || expected === undefined || staged.has(name)) {
      entry.resume();
      continue;
    }
    const file = path.join(stageDir, `f${staged.size}`);
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    const data = Buffer.concat(chunks);
    const got = crypto.createHash('sha256').update(data).digest('hex');
    if (got !== expected) throw new SlipwayError('ERR_REGISTRY', `cache mount file ${JSON.stringify(name)}: digest sha256:${got} is not the published sha256:${expected}`);
    fs.writeFileSync(file, data, { mode: 0o600 });
    staged.set(name, file);
  }
  await feeding;
  return staged;
}

/** What `applyTree` does to a folder. */
export interface TreeChange {
  /** The tree to make true for the paths below (the published one). */
  target: Tree;
  /** Files to put in place: path -> staged file (same filesystem, renamed in). */
  files: ReadonlyMap<string, string>;
  /** Paths to make as folders or symlinks, or whose owner, mode or mtime to set. */
  apply: string[];
  /** Paths to remove (with what is below them). */
  remove: string[];
}

/** True when every folder above `rel` in `root` is a real folder (no symlink on the way). */
function parentsReal(root: string, rel: string): boolean {
  const parts = rel.split('/').slice(0, -1);
  for (let i = 1; i <= parts.length; i++) {
    if (!lstat(path.join(root, ...parts.slice(0, i)))?.isDirectory()) return false;
  }
  return true;
}

const lstat = (p: string) => fs.lstatSync(p, { throwIfNoEntry: false });

/**
 * Makes `change` true in `dir`. Must run while no step uses the folder: nothing may swap a
 * folder for a symlink between the checks and the writes. Synchronous, as the scans are.
 */
export function applyTree(dir: string, change: TreeChange): void {
  const root = fs.realpathSync(dir);
  const made = new Set<string>();
  const applied = new Set(change.apply);
  // A folder on the way that is missing, a file or a symlink becomes a real folder.
  const ensureDir = (rel: string): void => {
    const parts = rel ? rel.split('/') : [];
    for (let i = 1; i <= parts.length; i++) {
      const sub = parts.slice(0, i).join('/');
      if (made.has(sub)) continue;
      const p = path.join(root, sub);
      const st = lstat(p);
      if (!st?.isDirectory()) {
        if (st) fs.rmSync(p, { force: true, recursive: true });
        fs.mkdirSync(p, { mode: 0o755 });
      }
      made.add(sub);
    }
  };
  for (const rel of [...change.remove].sort((a, b) => b.length - a.length)) {
    if (isSafeRel(rel) && parentsReal(root, rel)) fs.rmSync(path.join(root, rel), { recursive: true, force: true });
  }
  for (const rel of Object.keys(change.target).sort()) {
    const e = change.target[rel]!;
    const wanted = e.t !== 'f' && applied.has(rel);
    if (!isSafeRel(rel) || (!wanted && !change.files.has(rel))) continue;
    if (e.t === 'd') ensureDir(rel);
    else {
      ensureDir(path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel));
      const p = path.join(root, rel);
      const st = lstat(p);
      if (st && (st.isDirectory() || e.t === 'l')) fs.rmSync(p, { recursive: true, force: true });
      if (e.t === 'l') fs.symlinkSync(e.h, p);
      else fs.renameSync(change.files.get(rel)!, p);
    }
  }
  for (const rel of change.apply) {
    const e = change.target[rel];
    if (e && isSafeRel(rel) && parentsReal(root, rel)) setMeta(path.join(root, rel), e);
  }
}

/** Owner, mode (never setuid or setgid: the content came from elsewhere) and file mtime, on the path itself. */
function setMeta(p: string, e: TreeEntry): void {
  const st = lstat(p);
  if (!st || (e.t === 'd') !== st.isDirectory() || (e.t === 'l') !== st.isSymbolicLink()) return;
  fs.lchownSync(p, e.u, e.g);
  if (e.t === 'l') return;
  fs.chmodSync(p, e.m & 0o1777);
  if (e.t === 'f') fs.utimesSync(p, new Date(), e.mt / 1000);
}
