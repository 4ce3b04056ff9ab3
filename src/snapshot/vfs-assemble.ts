/**
 * The vfs driver's rootfs assembly: copies layer folders (overlay form) bottom-up into one plain
 * directory with overlay's semantics, so the result looks like the merged view of an overlay
 * mount of the same layers: a 0/0 character device deletes the path below it, a directory with
 * `trusted.overlay.opaque=y` replaces the lower directory's contents, an upper entry replaces a
 * lower one of another type, and a directory present in both merges and takes the upper's
 * attributes. Modes (setuid, sticky), owners, mtimes, symlinks, hard links inside a layer,
 * devices and fifos are kept by `cp -a`; `--reflink=auto` shares extents where the filesystem can.
 */
import fs from 'node:fs/promises';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { run } from './tar-read.js';
import { listXattrs, isOpaque, OPAQUE_XATTR, OVERLAY_XATTR_PREFIX, removeXattr } from './xattr.js';

/** One layer folder and what overlay reads from its xattrs. */
export interface VfsLayer {
  dir: string;
  /** Relative paths of the layer's opaque directories. */
  opaque: Set<string>;
}

/** What assembling produced: the layers (top-most first) for lookups of lower content. */
export interface AssembledRootfs {
  rootDir: string;
  layers: VfsLayer[];
}

/**
 * Builds `rootDir` (created, must not exist or be empty) from `lowerDirs` (top-most first).
 * An empty stack gives an empty root owned by root, mode 0755, as overlay's empty upper does.
 */
export async function assembleRootfs(lowerDirs: string[], rootDir: string): Promise<AssembledRootfs> {
  await fs.mkdir(rootDir, { recursive: true });
  await fs.chmod(rootDir, 0o755);
  const layers: VfsLayer[] = [];
  // Bottom-up: each layer is applied over the result of the ones below it.
  for (const dir of [...lowerDirs].reverse()) {
    const xattrs = await readOverlayXattrs(dir);
    const layer: VfsLayer = { dir, opaque: xattrs.opaque };
    await applyLayer(layer, rootDir, xattrs.names);
    layers.unshift(layer);
  }
  return { rootDir, layers };
}

/** Applies one layer over `rootDir`: clear what it deletes or replaces, one `cp -a`, then tidy up. */
async function applyLayer(layer: VfsLayer, rootDir: string, xattrNames: Map<string, string[]>): Promise<void> {
  const whiteouts: string[] = [];
  await clearForLayer(layer, rootDir, '', true, whiteouts);
  // Every conflicting path is gone now, so cp only creates non-directories (never writes through
  // an existing file, which could be a symlink or a hard link shared with another path) and
  // merges directories, taking the layer's attributes for them as overlay's merged view does.
  await run('cp', ['-a', '--reflink=auto', '--', `${layer.dir}/.`, `${rootDir}/`]);
  // cp copied the whiteout devices too; each one stands for "nothing here".
  const parents = new Set<string>();
  for (const rel of whiteouts) {
    await fs.rm(path.join(rootDir, rel), { force: true });
    parents.add(path.posix.dirname(rel) === '.' ? '' : path.posix.dirname(rel));
  }
  // Removing them bumped their directories' mtimes: give back the layer's, to the nanosecond.
  for (const rel of [...parents].sort((a, b) => b.length - a.length)) {
    await run('touch', ['-h', '-c', '-r', path.join(layer.dir, rel), '--', path.join(rootDir, rel)]);
  }
  // cp -a copies trusted.* xattrs as well; overlay never shows its own in the merged view.
  const gone = new Set(whiteouts);
  for (const [name, rels] of xattrNames) {
    // A filesystem that refused the xattr to cp leaves nothing to remove: that is fine too.
    for (const r of rels) if (!gone.has(r)) removeXattr(path.join(rootDir, r), name);
  }
}

/**
 * Walks the layer below `rel` and removes from `rootDir` whatever the layer deletes (whiteouts,
 * collected into `whiteouts`), hides (opaque directories) or replaces with another type.
 * `rootHas` is false once the corresponding root directory is known to be absent.
 */
async function clearForLayer(layer: VfsLayer, rootDir: string, rel: string, rootHas: boolean, whiteouts: string[]): Promise<void> {
  const entries = await fs.readdir(path.join(layer.dir, rel), { withFileTypes: true });
  for (const e of entries) {
    const child = rel === '' ? e.name : `${rel}/${e.name}`;
    const rootPath = path.join(rootDir, child);
    const there = rootHas ? await fs.lstat(rootPath).catch(() => undefined) : undefined;
    if (e.isCharacterDevice() && (await fs.lstat(path.join(layer.dir, child))).rdev === 0) {
      whiteouts.push(child);
      if (there) await fs.rm(rootPath, { recursive: true, force: true });
      continue;
    }
    if (!e.isDirectory()) {
      if (there) await fs.rm(rootPath, { recursive: true, force: true });
      continue;
    }
    const merge = there !== undefined && there.isDirectory() && !layer.opaque.has(child);
    if (there && !merge) await fs.rm(rootPath, { recursive: true, force: true });
    // Recurse even into fresh directories: their whiteouts must be found and removed after cp.
    await clearForLayer(layer, rootDir, child, merge, whiteouts);
  }
}

/**
 * The overlay xattrs of a layer folder, read in one walk that never follows a symlink: its
 * opaque directories and, per xattr name, the paths carrying it (`.` for the folder itself),
 * which the copy must not keep.
 */
export async function readOverlayXattrs(root: string): Promise<{ opaque: Set<string>; names: Map<string, string[]> }> {
  const opaque = new Set<string>();
  const names = new Map<string, string[]>();
  const visit = (rel: string, isDir: boolean): void => {
    const host = rel === '' ? root : path.join(root, rel);
    for (const name of listXattrs(host)) {
      if (!name.startsWith(OVERLAY_XATTR_PREFIX)) continue;
      if (name === OPAQUE_XATTR && isDir && rel !== '' && isOpaque(host)) opaque.add(rel);
      const list = names.get(name) ?? [];
      list.push(rel === '' ? '.' : rel);
      names.set(name, list);
    }
    if (!isDir) return;
    for (const e of readdirSync(host, { withFileTypes: true })) visit(rel === '' ? e.name : `${rel}/${e.name}`, e.isDirectory());
  };
  visit('', true);
  return { opaque, names };
}

/**
 * The path in a lower layer whose content the rootfs shows at `rel`, looking top-down with
 * whiteouts and opaque directories applied; undefined when no layer provides it.
 */
export async function lowerSource(layers: VfsLayer[], rel: string): Promise<string | undefined> {
  const parts = rel.split('/');
  for (const layer of layers) {
    let hidesBelow = false;
    let absent = false;
    for (let k = 1; k < parts.length; k++) {
      const p = parts.slice(0, k).join('/');
      const st = await fs.lstat(path.join(layer.dir, p)).catch(() => undefined);
      if (st === undefined) {
        absent = true;
        break;
      }
      if (!st.isDirectory()) return undefined; // a whiteout or a non-directory hides rel
      if (layer.opaque.has(p)) hidesBelow = true;
    }
    if (!absent) {
      const st = await fs.lstat(path.join(layer.dir, rel)).catch(() => undefined);
      if (st !== undefined) return st.isCharacterDevice() && st.rdev === 0 ? undefined : path.join(layer.dir, rel);
    }
    if (hidesBelow) return undefined;
  }
  return undefined;
}
