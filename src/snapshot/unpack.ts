import { chmod, lchown, link, lstat, lutimes, mkdir, readdir, rm, utimes } from 'node:fs/promises';
import { posix, resolve as resolveHost } from 'node:path';
import { Readable } from 'node:stream';
import { SlipwayError } from '../errors.js';
import { markOpaque } from './xattr.js';
import { WH, WH_META, WH_OPAQUE, badArchive, createNode, entryMeta, makeNode, readTar, setMeta, type EntryMeta, type TarHeader } from './tar-read.js';

/**
 * Extracts a plain OCI/Docker layer tar into the empty folder `layerDir` in overlayfs upper-dir
 * form: `.wh.<name>` becomes a 0/0 character device, `.wh..wh..opq` sets
 * `trusted.overlay.opaque=y` on its directory, other `.wh..wh.*` entries are dropped. Rejects
 * absolute names, names escaping the layer, writes through symlinks and hard links that leave the
 * layer or point at symlinks. Returns the sha256 of the tar bytes and their count.
 */
export async function unpackLayer(input: NodeJS.ReadableStream, layerDir: string): Promise<{ diffId: string; size: number }> {
  const root = resolveHost(layerDir);
  await mkdir(root, { recursive: true });
  if ((await readdir(root)).length > 0) throw new SlipwayError('ERR_INTERNAL', `unpackLayer: ${root} is not empty`);
  const writer = new LayerWriter(root);
  const result = await readTar(input, (h, body) => writer.entry(h, body));
  await writer.finish();
  return result;
}

/** Validates a layer entry name: relative, no `..` after cleaning. '' is the layer root. */
function layerPath(name: string, what = 'entry'): string {
  if (name.includes('\0')) throw badArchive(`${what} name contains NUL: ${JSON.stringify(name)}`);
  if (name.startsWith('/')) throw badArchive(`${what} ${JSON.stringify(name)} is absolute`);
  const clean = posix.normalize(name).replace(/\/+$/, '');
  if (clean === '..' || clean.startsWith('../')) throw badArchive(`${what} ${JSON.stringify(name)} is outside of the layer`);
  return clean === '.' || clean === '' ? '' : clean;
}

function parentsOf(rel: string): string[] {
  const parts = rel.split('/');
  return parts.slice(0, -1).map((_, i) => parts.slice(0, i + 1).join('/'));
}

function isWhiteoutDevice(st: import('node:fs').Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

/** The state of one unpackLayer run. Everything in `root` was created by this run. */
class LayerWriter {
  /** Paths (relative) known to be real directories; forgotten when anything removes them. */
  private readonly knownDirs = new Set<string>();
  /** Directory metadata, applied at the end so creating children does not bump mtimes. */
  private readonly dirs = new Map<string, EntryMeta>();
  private readonly opaque = new Set<string>();
  /** One whiteout per (uid, gid, mtime) is mknod-ed; the others hard-link it, as overlayfs does. */
  private readonly whiteouts = new Map<string, string>();

  constructor(private readonly root: string) {}

  private host(rel: string): string {
    return rel === '' ? this.root : `${this.root}/${rel}`;
  }

  async entry(h: TarHeader, body: Readable): Promise<void> {
    const rel = layerPath(h.name ?? '');
    if (rel === '') return; // the root entry: the layer folder belongs to the caller, as in Docker
    const base = posix.basename(rel);
    const dir = posix.dirname(rel) === '.' ? '' : posix.dirname(rel);
    // Top-level AUFS metadata (.wh..wh.plnk/..., .wh..wh.aufs) and a root opaque marker are dropped.
    if (rel.startsWith(WH_META)) return;
    if (base.startsWith(WH_META)) {
      if (base !== WH_OPAQUE) return;
      await this.ensureParents(rel);
      this.opaque.add(dir);
      return;
    }
    if (base.startsWith(WH)) return this.whiteout(dir, base.slice(WH.length), entryMeta(h));
    await this.ensureParents(rel);
    const meta = entryMeta(h);
    if (h.type === 'directory') return this.directory(rel, meta);
    await this.replace(rel, false);
    if (h.type === 'link') return this.hardlink(rel, h.linkname ?? '', meta);
    await createNode(this.host(rel), h, body, meta);
  }

  /** Makes every parent of `rel` a real directory: missing ones are created 0755, a symlink is refused. */
  private async ensureParents(rel: string): Promise<void> {
    for (const p of parentsOf(rel)) {
      if (this.knownDirs.has(p)) continue;
      const st = await lstat(this.host(p)).catch(() => null);
      if (st === null) {
        await mkdir(this.host(p), { mode: 0o755 });
      } else if (st.isSymbolicLink()) {
        throw badArchive(`${JSON.stringify(rel)} would be written through the symlink ${JSON.stringify(p)}`);
      } else if (isWhiteoutDevice(st)) {
        // `.wh.p` then `p/x`: the lower `p` is deleted and a new one made: an opaque directory.
        await rm(this.host(p));
        await mkdir(this.host(p), { mode: 0o755 });
        this.opaque.add(p);
      } else if (!st.isDirectory()) {
        throw badArchive(`${JSON.stringify(rel)}: parent ${JSON.stringify(p)} is not a directory`);
      }
      this.knownDirs.add(p);
    }
  }

  /** Removes whatever is at `rel` unless both it and the new entry are directories. */
  private async replace(rel: string, newIsDir: boolean): Promise<'merge' | 'fresh' | 'was-whiteout'> {
    const st = await lstat(this.host(rel)).catch(() => null);
    if (st === null) return 'fresh';
    if (st.isDirectory() && newIsDir) return 'merge';
    await rm(this.host(rel), { recursive: true, force: true });
    this.forget(rel);
    return isWhiteoutDevice(st) ? 'was-whiteout' : 'fresh';
  }

  /** Drops everything remembered about `rel` and below after it was removed. */
  private forget(rel: string): void {
    const under = (p: string): boolean => p === rel || p.startsWith(`${rel}/`);
    for (const s of [this.knownDirs, this.opaque]) for (const p of [...s]) if (under(p)) s.delete(p);
    for (const p of [...this.dirs.keys()]) if (under(p)) this.dirs.delete(p);
    for (const [k, p] of [...this.whiteouts]) if (under(p)) this.whiteouts.delete(k);
  }

  private async directory(rel: string, meta: EntryMeta): Promise<void> {
    const state = await this.replace(rel, true);
    if (state !== 'merge') await mkdir(this.host(rel), { mode: 0o700 });
    if (state === 'was-whiteout') this.opaque.add(rel);
    this.knownDirs.add(rel);
    if (process.getuid?.() === 0) await lchown(this.host(rel), meta.uid, meta.gid);
    this.dirs.set(rel, meta);
  }

  private async whiteout(dir: string, name: string, meta: EntryMeta): Promise<void> {
    if (name === '' || name === '.' || name === '..') throw badArchive(`bad whiteout name ${JSON.stringify(WH + name)}`);
    const rel = dir === '' ? name : `${dir}/${name}`;
    await this.ensureParents(rel);
    const st = await lstat(this.host(rel)).catch(() => null);
    if (st !== null) {
      // Whiteouts only hide lower layers: an entry of this layer stays, a directory turns opaque.
      if (st.isDirectory()) this.opaque.add(rel);
      return;
    }
    const key = `${meta.uid}:${meta.gid}:${meta.mtime}`;
    const template = this.whiteouts.get(key);
    if (template !== undefined) {
      const t = await lstat(this.host(template)).catch(() => null);
      if (t !== null && isWhiteoutDevice(t)) return link(this.host(template), this.host(rel));
    }
    await makeNode(this.host(rel), 'c', 0, 0);
    // mode stays 0 like overlayfs's own whiteouts and Docker's ConvertRead; the mtime is kept
    // (Docker drops it) so that packing the layer again gives the same bytes.
    if (process.getuid?.() === 0) await lchown(this.host(rel), meta.uid, meta.gid);
    await lutimes(this.host(rel), meta.mtime, meta.mtime);
    this.whiteouts.set(key, rel);
  }

  private async hardlink(rel: string, linkname: string, meta: EntryMeta): Promise<void> {
    const target = layerPath(linkname.replace(/^\/+/, ''), 'hard link target');
    if (target === '' || target === rel) throw badArchive(`bad hard link ${JSON.stringify(rel)} -> ${JSON.stringify(linkname)}`);
    for (const p of parentsOf(target)) {
      if (this.knownDirs.has(p)) continue;
      const pst = await lstat(this.host(p)).catch(() => null);
      if (pst === null || !pst.isDirectory()) {
        throw badArchive(`hard link ${JSON.stringify(rel)} -> ${JSON.stringify(linkname)}: ${JSON.stringify(p)} is not a directory`);
      }
    }
    const st = await lstat(this.host(target)).catch(() => null);
    if (st === null || st.isSymbolicLink() || st.isDirectory()) {
      throw badArchive(`hard link ${JSON.stringify(rel)} -> ${JSON.stringify(linkname)}: target missing, a symlink or a directory`);
    }
    await link(this.host(target), this.host(rel));
    await setMeta(this.host(rel), meta, { chmod: true });
  }

  /** Sets opaque xattrs and directory modes and mtimes, deepest first. */
  async finish(): Promise<void> {
    for (const rel of [...this.opaque].sort()) {
      if (await this.isRealDir(rel)) markOpaque(this.host(rel));
    }
    const dirs = [...this.dirs].sort((a, b) => b[0].split('/').length - a[0].split('/').length);
    for (const [rel, meta] of dirs) {
      if (!(await this.isRealDir(rel))) continue;
      await chmod(this.host(rel), meta.mode);
      await utimes(this.host(rel), meta.mtime, meta.mtime);
    }
  }

  /** True when `rel` and all its parents are real directories (not symlinks). */
  private async isRealDir(rel: string): Promise<boolean> {
    for (const p of [...parentsOf(rel), rel]) {
      const st = await lstat(this.host(p)).catch(() => null);
      if (st === null || !st.isDirectory()) return false;
    }
    return true;
  }
}
