import { createHash } from 'node:crypto';
import { appendFileSync, closeSync, createReadStream, lstatSync, openSync, readdirSync, readlinkSync, readSync, constants, type BigIntStats } from 'node:fs';
import { resolve as resolveHost } from 'node:path';
import { Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack, type Header, type Pack } from 'tar-stream';
import { SlipwayError } from '../errors.js';
import { isOpaque, listXattrs, OPAQUE_XATTR } from './xattr.js';
import { shiftOneBack } from '../sandbox/shift-owners.js';
import type { IdMapping } from '../sandbox/userns.js';

const SMALL_FILE = 1 << 20;

type PackHeader = Partial<Omit<Header, 'pax'>> & { name: string; pax?: Record<string, string> };

const S_IFREG = 0o100000;
/** Largest value tar-stream writes correctly into a ustar uid/gid field (6 octal digits). */
const MAX_USTAR_ID = 0o777777;
const MAX_USTAR_TIME = 2 ** 31 - 1; // tar-stream encodes mtime with `| 0`

interface PackContext {
  pack: Pack;
  root: string;
  /** dev:ino -> name of the first path of a hard-link group, in walk order. */
  links: Map<string, string>;
  clamp: number | undefined;
  /** Owners still in a step's host ids, mapped back on disk as the walk meets them. */
  ownersBack: IdMapping | undefined;
  /** Docker's layersize, summed in the same walk: apparent sizes of non-directories, each inode once. */
  apparent: number;
  inodes: Set<string>;
  /** Entries the walk may still meet (packSmallLayer); past it, OverBudget is thrown. */
  budget: number;
}

/** What packSmallLayer's walk throws past its budget. */
class OverBudget extends Error {}

let packs = 0;

/**
 * How many layers this thread has packed. Tests that count packs across threads and processes
 * set SLIPWAY_PACK_LOG to a file, which gets one line per pack.
 */
export function packCount(): number {
  return packs;
}

/** Counts a pack of `root` (this thread's count, and SLIPWAY_PACK_LOG's line), whichever packer packs it. */
export function notePack(root: string): void {
  packs++;
  const log = process.env['SLIPWAY_PACK_LOG'];
  if (log) appendFileSync(log, `${root}\n`);
}

/**
 * Writes the layer folder `layerDir` (overlayfs upper-dir form) to `out` as a deterministic OCI
 * layer tar, the way Docker's overlay2 driver does: depth-first, names sorted bytewise, no `.`
 * entry, numeric owners with empty uname/gname, whole-second mtimes (clamped to
 * `opts.clampMtime` when given), hard links as `link` entries to the first path seen, 0/0
 * character devices as `.wh.<name>`, opaque directories followed by `<dir>/.wh..wh..opq`.
 * Sockets are skipped. `out` is ended; with `out === null` only the digest and size are computed.
 * With `opts.ownersBack`, a RUN step's owners are mapped back (`shiftOwnersBack`, the folder
 * itself included) in this same walk, on disk and in the tar: one lstat per file, not two.
 */
export async function packLayer(
  layerDir: string,
  out: NodeJS.WritableStream | null,
  opts: { clampMtime?: number; ownersBack?: IdMapping } = {},
): Promise<PackResult> {
  notePack(resolveHost(layerDir));
  return packWalk(layerDir, out, opts, Infinity);
}

/** A packed layer: its diff id, its tar's size, Docker's layersize. */
export interface PackResult { diffId: string; size: number; layerSize: number }

/**
 * packLayer for a layer of at most `budget` entries, digest and sizes only (a step's small layer,
 * for which starting the native packer costs more than packing it here). Undefined, and no pack
 * counted, when the walk meets more: owners it mapped back stay so (the mapping is idempotent).
 */
export async function packSmallLayer(layerDir: string, budget: number, opts: { ownersBack?: IdMapping } = {}): Promise<PackResult | undefined> {
  try {
    const r = await packWalk(layerDir, null, opts, budget);
    notePack(resolveHost(layerDir));
    return r;
  } catch (e) {
    if (e instanceof OverBudget) return undefined;
    throw e;
  }
}

async function packWalk(layerDir: string, out: NodeJS.WritableStream | null, opts: { clampMtime?: number; ownersBack?: IdMapping }, budget: number): Promise<PackResult> {
  const root = resolveHost(layerDir);
  const ctx: PackContext = { pack: tarPack(), root, links: new Map(), clamp: opts.clampMtime, ownersBack: opts.ownersBack, apparent: 0, inodes: new Set(), budget };
  if (ctx.ownersBack) shiftOneBack(root, lstatSync(root), ctx.ownersBack);
  const hash = createHash('sha256');
  let size = 0;
  const count = (b: Buffer): void => {
    hash.update(b);
    size += b.length;
  };
  // Synchronous stages: an async generator between them cost a promise per 512-byte header.
  const src = ctx.pack as unknown as NodeJS.ReadableStream; // a streamx Readable, compatible with pipeline
  const done = out === null
    ? pipeline(src, new Writable({ highWaterMark: 1 << 20, write: (b: Buffer, _e, cb) => { count(b); cb(); } }))
    : pipeline(src, new Transform({ highWaterMark: 1 << 20, transform: (b: Buffer, _e, cb) => { count(b); cb(null, b); } }), out);
  done.catch(() => undefined); // awaited below; this only prevents an unhandled rejection
  try {
    await writeDir(ctx, '');
    ctx.pack.finalize();
  } catch (e) {
    ctx.pack.destroy(e as Error);
    await done.catch(() => undefined);
    throw e;
  }
  await done;
  return { diffId: `sha256:${hash.digest('hex')}`, size, layerSize: ctx.apparent };
}

/**
 * Docker's `layersize`: the apparent size of every non-directory (symlinks count their target
 * length, as in Docker's directory.Size), each hard-linked inode once.
 */
export async function layerSize(layerDir: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  // Synchronous metadata calls: one thread-pool round trip per file made 10,000-file layers
  // slow, and each call is a few microseconds against the page cache.
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const p = `${dir}/${entry.name}`;
      if (entry.isDirectory()) {
        walk(p);
        continue;
      }
      const st = lstatSync(p, { bigint: true });
      const key = `${st.dev}:${st.ino}`;
      if (st.size === 0n || seen.has(key)) continue;
      seen.add(key);
      total += Number(st.size);
    }
  };
  walk(resolveHost(layerDir));
  return total;
}

const INCOMPLETE_DIFF = ['trusted.overlay.redirect', 'trusted.overlay.metacopy'];

/**
 * True when the directory is opaque. Fails on redirect/metacopy xattrs: such an upper dir is
 * not a complete diff, so the overlay must be mounted with redirect_dir=off,metacopy=off
 * (Docker's overlay2 falls back to a naive diff). Symlinks are read, never followed.
 *
 * Only directories are asked (two or three system calls each, which in this VM cost ~10 µs
 * apiece: asking every file too was a third of a 10,000-file layer's pack). A file could carry
 * only `metacopy`, and no upper dir here can hold one: the shim mounts every overlay with
 * metacopy=off, or on a kernel too old to take that option, which has no metacopy at all; a
 * step cannot set trusted.* itself (it needs CAP_SYS_ADMIN in the host's user namespace, and
 * overlayfs refuses trusted.overlay.* through the merged view); and unpacking sets no xattr
 * but the opaque mark.
 */
function overlayOpaque(host: string): boolean {
  const names = listXattrs(host);
  const bad = names.find((n) => INCOMPLETE_DIFF.includes(n));
  if (bad !== undefined) throw new SlipwayError('ERR_INTERNAL', `packLayer: ${host} has ${bad}; mount overlays with redirect_dir=off,metacopy=off`);
  return names.includes(OPAQUE_XATTR) && isOpaque(host);
}

/**
 * A small file's bytes, `size` of them as lstat saw, in three system calls (readFileSync adds an
 * fstat). The extra byte asked for shows a file that grew since; fewer bytes, one that shrank.
 */
function readSmall(host: string, size: number): Buffer {
  const body = Buffer.allocUnsafe(size + 1);
  const fd = openSync(host, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    // One read as a rule: a regular file's read comes back short only at its end.
    let got = readSync(fd, body, 0, size + 1, null);
    for (let n = got; n > 0 && got < size; got += n) n = readSync(fd, body, got, size + 1 - got, null);
    if (got !== size) throw new Error(`${host} changed while it was packed`);
    return body.subarray(0, size);
  } finally {
    closeSync(fd);
  }
}

async function writeDir(ctx: PackContext, relDir: string): Promise<void> {
  const hostDir = relDir === '' ? ctx.root : `${ctx.root}/${relDir}`;
  // Bytewise order, as Go's filepath.Walk sorts names (JS's default sort compares UTF-16 units).
  const names = readdirSync(hostDir)
    .map((n) => ({ n, key: Buffer.from(n) }))
    .sort((a, b) => Buffer.compare(a.key, b.key))
    .map((e) => e.n);
  for (const name of names) {
    if (--ctx.budget < 0) throw new OverBudget();
    const rel = relDir === '' ? name : `${relDir}/${name}`;
    const host = `${ctx.root}/${rel}`;
    const st = lstatSync(host, { bigint: true });
    const owner = ctx.ownersBack ? shiftOneBack(host, st, ctx.ownersBack) : ([Number(st.uid), Number(st.gid)] as const);
    await writeEntry(ctx, rel, st, owner);
    if (st.isDirectory()) await writeDir(ctx, rel);
  }
}

async function writeEntry(ctx: PackContext, rel: string, st: BigIntStats, owner: readonly [number, number]): Promise<void> {
  const host = `${ctx.root}/${rel}`;
  const h = baseHeader(ctx, rel, st, owner);
  if (st.isDirectory()) {
    const opaque = overlayOpaque(host);
    await addEntry(ctx.pack, { ...h, name: `${rel}/`, type: 'directory' });
    if (opaque) {
      // Docker's overlayWhiteoutConverter: a regular file with the directory's permission bits and
      // owner, and a zero ModTime, which Go's tar writer encodes as 0.
      const mode = S_IFREG | (Number(st.mode) & 0o777);
      await addEntry(ctx.pack, { ...withTime(h, 0, ctx.clamp), name: `${rel}/.wh..wh..opq`, type: 'file', mode, size: 0 });
    }
    return;
  }
  countApparent(ctx, st);
  if (st.isCharacterDevice() && st.rdev === 0n) {
    // An overlayfs whiteout. Never hard-link-tracked: overlayfs shares one whiteout inode.
    const slash = rel.lastIndexOf('/');
    const name = `${rel.slice(0, slash + 1)}.wh.${rel.slice(slash + 1)}`;
    await addEntry(ctx.pack, { ...h, name, type: 'file', mode: S_IFREG | 0o600, size: 0 });
    return;
  }
  if (st.isSocket()) return; // Docker skips sockets too
  if (st.nlink > 1n) {
    const key = `${st.dev}:${st.ino}`;
    const first = ctx.links.get(key);
    if (first !== undefined) {
      await addEntry(ctx.pack, { ...h, type: 'link', linkname: first, size: 0 });
      return;
    }
    ctx.links.set(key, rel);
  }
  if (st.isFile() && st.size <= SMALL_FILE) {
    // Small files in one read: a stream per file costs more than the file (10,000-file layers).
    const body = st.size === 0n ? Buffer.alloc(0) : readSmall(host, Number(st.size));
    await new Promise<void>((resolve, reject) => ctx.pack.entry({ ...h, type: 'file', size: body.length }, body, (err) => (err ? reject(err) : resolve())));
  } else if (st.isFile()) {
    const entry = ctx.pack.entry({ ...h, type: 'file', size: Number(st.size) });
    await pipeline(createReadStream(host), entry as unknown as NodeJS.WritableStream);
  } else if (st.isSymbolicLink()) {
    await addEntry(ctx.pack, { ...h, type: 'symlink', linkname: readlinkSync(host) });
  } else if (st.isCharacterDevice() || st.isBlockDevice()) {
    const { major, minor } = splitRdev(st.rdev);
    const type = st.isCharacterDevice() ? 'character-device' : 'block-device';
    await addEntry(ctx.pack, { ...h, type, devmajor: major, devminor: minor });
  } else if (st.isFIFO()) {
    await addEntry(ctx.pack, { ...h, type: 'fifo' });
  }
}

/** `layerSize`'s rule, applied to one non-directory of the walk. */
function countApparent(ctx: PackContext, st: BigIntStats): void {
  const key = `${st.dev}:${st.ino}`;
  if (st.size === 0n || ctx.inodes.has(key)) return;
  ctx.inodes.add(key);
  ctx.apparent += Number(st.size);
}

function baseHeader(ctx: PackContext, rel: string, st: BigIntStats, [uid, gid]: readonly [number, number]): PackHeader {
  const h: PackHeader = {
    name: rel,
    // The full st_mode: tar-stream masks it to 07777 but would replace a 0 mode by 0644.
    mode: Number(st.mode),
    uid: Math.min(uid, MAX_USTAR_ID),
    gid: Math.min(gid, MAX_USTAR_ID),
    uname: '',
    gname: '',
    size: 0,
  };
  // Large ids go into PAX records (tar-stream would silently write 777777).
  const pax: Record<string, string> = {};
  if (uid > MAX_USTAR_ID) pax['uid'] = String(uid);
  if (gid > MAX_USTAR_ID) pax['gid'] = String(gid);
  if (Object.keys(pax).length > 0) h.pax = pax;
  // Floor division of a bigint: whole seconds, as Docker truncates ModTime to the second.
  const ns = st.mtimeNs;
  const seconds = ns >= 0n ? ns / 1_000_000_000n : -((-ns + 999_999_999n) / 1_000_000_000n);
  return withTime(h, Number(seconds), ctx.clamp);
}

/** Sets a whole-second mtime, clamped, with a PAX record when the ustar field cannot hold it. */
function withTime(h: PackHeader, seconds: number, clamp: number | undefined): PackHeader {
  const s = clamp !== undefined && seconds > clamp ? clamp : seconds;
  const { mtime: _dropped, ...pax } = h.pax ?? {};
  const out: PackHeader = { ...h, mtime: new Date(Math.min(Math.max(s, 0), MAX_USTAR_TIME) * 1000) };
  if (s < 0 || s > MAX_USTAR_TIME) pax['mtime'] = String(s);
  if (Object.keys(pax).length > 0) out.pax = pax;
  else delete out.pax;
  return out;
}

/** glibc's gnu_dev_major / gnu_dev_minor. */
function splitRdev(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n);
  return { major: Number(major), minor: Number(minor) };
}

/** Adds a body-less entry and waits until tar-stream has taken it. */
function addEntry(pack: Pack, header: PackHeader): Promise<void> {
  return new Promise((resolve, reject) => {
    const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
    // A 'file' sink waits for its body even when empty (whiteouts): hand it an empty buffer.
    if (header.type === 'file') pack.entry(header, Buffer.alloc(0), cb);
    else pack.entry(header, cb);
  });
}
