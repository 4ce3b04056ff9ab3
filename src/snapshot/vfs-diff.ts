/**
 * The vfs driver's diff: a snapshot of every path's identity before a step, and a walk after it
 * that writes what changed as a layer folder in overlay form, the way overlay's upper dir would
 * have recorded it: changed and new entries (with their parent directories, as a copy-up
 * brings them), 0/0 character devices for deleted paths, `trusted.overlay.opaque=y` on a
 * directory that was deleted (or was not a directory) and made anew.
 */
import { createHash } from 'node:crypto';
import { createReadStream, type BigIntStats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { makeNode } from './tar-read.js';
import { markOpaque } from './xattr.js';
import { lowerSource, type VfsLayer } from './vfs-assemble.js';

/** What a path is, as far as deciding "changed" goes. */
export interface Identity {
  type: 'dir' | 'file' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';
  size: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  /** 0 where the filesystem does not report a birth time. */
  birthtimeNs: bigint;
  ino: bigint;
  dev: bigint;
  /** Permission bits incl. setuid, setgid, sticky. */
  mode: number;
  uid: number;
  gid: number;
  nlink: bigint;
  rdev: bigint;
  /** Symlink target. */
  link?: string;
  /** Directory entries, in readdir order. */
  children?: string[];
}

/** Relative path ('' is the root) → identity, for a whole tree. */
export type TreeSnapshot = Map<string, Identity>;

function typeOf(st: BigIntStats): Identity['type'] {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'socket';
}

function identityOf(st: BigIntStats): Identity {
  return {
    type: typeOf(st), size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, birthtimeNs: st.birthtimeNs,
    ino: st.ino, dev: st.dev, mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid),
    nlink: st.nlink, rdev: st.rdev,
  };
}

const join = (dir: string, name: string): string => (dir === '' ? name : `${dir}/${name}`);

/** Walks `root` (never following symlinks) and records every path's identity. */
export async function snapshotTree(root: string): Promise<TreeSnapshot> {
  const snap: TreeSnapshot = new Map();
  const host = (rel: string): string => (rel === '' ? root : `${root}/${rel}`);
  const visit = async (rel: string, st: BigIntStats): Promise<void> => {
    const id = identityOf(st);
    snap.set(rel, id);
    if (id.type === 'symlink') id.link = await fs.readlink(host(rel));
    if (id.type !== 'dir') return;
    const names = await fs.readdir(host(rel));
    id.children = names;
    // One directory's lstats in parallel; directories one at a time keeps the fan-out bounded.
    const stats = await Promise.all(names.map((n) => fs.lstat(host(join(rel, n)), { bigint: true })));
    for (const [i, n] of names.entries()) await visit(join(rel, n), stats[i] as BigIntStats);
  };
  await visit('', await fs.lstat(root, { bigint: true }));
  return snap;
}

/** Any field of the identity differs: overlay would have copied the entry up. */
function changed(b: Identity, a: Identity): boolean {
  return b.type !== a.type || b.size !== a.size || b.mtimeNs !== a.mtimeNs || b.ctimeNs !== a.ctimeNs
    || b.ino !== a.ino || b.mode !== a.mode || b.uid !== a.uid || b.gid !== a.gid || b.rdev !== a.rdev
    || b.nlink !== a.nlink || b.link !== a.link;
}

/** Options of diffRootfs. */
export interface DiffOptions {
  rootDir: string;
  /** snapshotTree(rootDir) taken right before the step ran. */
  before: TreeSnapshot;
  /** The empty folder that receives the layer; same filesystem as rootDir (entries are moved). */
  layerDir: string;
  /** The layers the rootfs was assembled from (top-most first), for the old content of candidates. */
  layers: VfsLayer[];
  /** A private folder on the same filesystem, for the shared whiteout inode. */
  workDir: string;
}

/** What goes into the layer, decided before anything moves (a move changes ctimes). */
interface Plan {
  dirs: Map<string, { id: Identity; opaque: boolean }>;
  moves: string[];
  whiteouts: string[];
}

/**
 * Writes the step's changes to `layerDir` in overlay form by comparing `rootDir` against
 * `before`. Consumes rootDir: changed non-directories are moved (not copied) into the layer,
 * which keeps owners, modes, times, xattrs and hard links between moved paths for free.
 */
export async function diffRootfs(opts: DiffOptions): Promise<void> {
  const after = await snapshotTree(opts.rootDir);
  const plan: Plan = { dirs: new Map(), moves: [], whiteouts: [] };
  const hashes = new Map<string, Promise<string>>();
  const ctx: Ctx = { opts, after, plan, hashes };
  await diffDir(ctx, '', 'compare');
  await writePlan(opts, after, plan);
}

interface Ctx {
  opts: DiffOptions;
  after: TreeSnapshot;
  plan: Plan;
  hashes: Map<string, Promise<string>>;
  /** dev:ino → the byte-smallest path that had it before too; built on first use. */
  groups?: Map<string, string>;
}

/** Like a copy-up, puts every parent directory of `rel` into the layer (with its current attributes). */
function addParents(ctx: Ctx, rel: string): void {
  const parts = rel.split('/');
  for (let k = 1; k < parts.length; k++) {
    const p = parts.slice(0, k).join('/');
    if (!ctx.plan.dirs.has(p)) ctx.plan.dirs.set(p, { id: ctx.after.get(p) as Identity, opaque: false });
  }
}

/** Puts `rel` (and its parents) into the layer. */
function add(ctx: Ctx, rel: string, id: Identity, opaque: boolean): void {
  addParents(ctx, rel);
  if (id.type === 'dir') ctx.plan.dirs.set(rel, { id, opaque });
  else ctx.plan.moves.push(rel);
}

/**
 * Compares one directory's entries. In 'all' mode (inside a new or opaque directory) nothing
 * below exists in the lower layers, so everything is written and nothing is whited out.
 */
async function diffDir(ctx: Ctx, rel: string, mode: 'compare' | 'all'): Promise<void> {
  const names = ctx.after.get(rel)?.children ?? [];
  if (mode === 'compare') {
    const now = new Set(names);
    for (const n of ctx.opts.before.get(rel)?.children ?? []) {
      if (now.has(n)) continue;
      addParents(ctx, join(rel, n));
      ctx.plan.whiteouts.push(join(rel, n));
    }
  }
  for (const n of names) {
    const child = join(rel, n);
    const a = ctx.after.get(child) as Identity;
    const b = mode === 'compare' ? ctx.opts.before.get(child) : undefined;
    if (b === undefined) {
      add(ctx, child, a, false);
      if (a.type === 'dir') await diffDir(ctx, child, 'all');
      continue;
    }
    if (a.type === 'dir') {
      // A directory made anew (even on a reused inode number) hides everything below: opaque.
      const recreated = b.type !== 'dir' || b.ino !== a.ino || (b.birthtimeNs !== 0n && b.birthtimeNs !== a.birthtimeNs);
      if (recreated || changed(b, a)) add(ctx, child, a, recreated);
      await diffDir(ctx, child, recreated ? 'all' : 'compare');
      continue;
    }
    if (!changed(b, a) || (await onlyLinkCountChanged(ctx, child, b, a))) continue;
    add(ctx, child, a, false);
  }
}

/**
 * The one candidate that gets hashed. In the assembled rootfs, paths hard-linked in a layer
 * share one inode, so linking or unlinking one of them changes the ctime and link count of all
 * of them, where overlay (which breaks such links on copy-up) records at most the path linked
 * from. When that is all that changed and the content still equals the lower layer's, the entry
 * counts as unchanged, except for one path per inode that gained links: the source of the new
 * link as far as can be told (the byte-smallest old path), which overlay copies up. Any other
 * change counts, as in overlay: an mtime-only `touch`, a chmod or chown to the same value.
 */
async function onlyLinkCountChanged(ctx: Ctx, rel: string, b: Identity, a: Identity): Promise<boolean> {
  if (a.type !== 'file' || b.type !== 'file' || a.nlink === b.nlink) return false;
  if (a.size !== b.size || a.mtimeNs !== b.mtimeNs || a.ino !== b.ino || a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid) return false;
  if (a.nlink > b.nlink && linkSource(ctx, a) === rel) return false;
  const lower = await lowerSource(ctx.opts.layers, rel);
  if (lower === undefined) return false;
  const lst = await fs.lstat(lower, { bigint: true });
  if (!lst.isFile() || lst.size !== a.size) return false;
  const [x, y] = await Promise.all([hashFile(ctx, lower, lst.dev, lst.ino), hashFile(ctx, path.join(ctx.opts.rootDir, rel), a.dev, a.ino)]);
  return x === y;
}

/** The byte-smallest path that had inode `a` before the step too. */
function linkSource(ctx: Ctx, a: Identity): string | undefined {
  if (ctx.groups === undefined) {
    ctx.groups = new Map();
    for (const [rel, id] of ctx.after) {
      if (id.type !== 'file' || id.nlink < 2n || ctx.opts.before.get(rel)?.ino !== id.ino) continue;
      const key = `${id.dev}:${id.ino}`;
      const cur = ctx.groups.get(key);
      if (cur === undefined || Buffer.compare(Buffer.from(rel), Buffer.from(cur)) < 0) ctx.groups.set(key, rel);
    }
  }
  return ctx.groups.get(`${a.dev}:${a.ino}`);
}

function hashFile(ctx: Ctx, file: string, dev: bigint, ino: bigint): Promise<string> {
  const key = `${dev}:${ino}`;
  let h = ctx.hashes.get(key);
  if (h === undefined) {
    const hash = createHash('sha256');
    h = pipeline(createReadStream(file), hash).then(() => hash.digest('hex'));
    ctx.hashes.set(key, h);
  }
  return h;
}

/** Whole microseconds: a double holds them exactly, so the second never rounds up. */
function seconds(ns: bigint): number {
  return Number(ns / 1_000_000_000n) + Number((ns % 1_000_000_000n) / 1000n) / 1e6;
}

async function writePlan(opts: DiffOptions, after: TreeSnapshot, plan: Plan): Promise<void> {
  const layer = (rel: string): string => path.join(opts.layerDir, rel);
  // Map order is insertion order: a parent always went in before its children.
  for (const rel of plan.dirs.keys()) await fs.mkdir(layer(rel), { mode: 0o700 });
  for (const rel of plan.moves) await fs.rename(path.join(opts.rootDir, rel), layer(rel));
  if (plan.whiteouts.length > 0) {
    // One whiteout inode, hard-linked at every deleted path, as overlayfs does.
    const template = path.join(opts.workDir, 'whiteout');
    await fs.rm(template, { force: true });
    await makeNode(template, 'c', 0, 0);
    for (const rel of plan.whiteouts) await fs.link(template, layer(rel));
  }
  for (const [rel, d] of plan.dirs) if (d.opaque) markOpaque(layer(rel));
  // Directory attributes last and deepest first: creating children bumps a directory's mtime.
  // lchown before chmod: chown clears setuid/setgid.
  const dirs = [...plan.dirs].sort((x, y) => y[0].split('/').length - x[0].split('/').length);
  for (const [rel, { id }] of dirs) {
    await fs.lchown(layer(rel), id.uid, id.gid);
    await fs.chmod(layer(rel), id.mode);
    await fs.utimes(layer(rel), seconds(id.mtimeNs), seconds(id.mtimeNs));
  }
  // Like overlay's upper dir, the layer's root carries the rootfs root's owner and mode.
  const root = after.get('');
  if (root !== undefined) {
    await fs.lchown(opts.layerDir, root.uid, root.gid);
    await fs.chmod(opts.layerDir, root.mode);
  }
}
