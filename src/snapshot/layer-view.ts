/**
 * An image's filesystem read straight from its layer folders (overlay form, top-most first),
 * without mounting: what an overlay mount of them would show. A 0/0 character device deletes
 * the path in the layers below; a directory with `trusted.overlay.opaque=y` hides their
 * contents; an upper non-directory hides a lower directory of the same name.
 */
import { lstatSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import path from 'node:path';
import { matchSegment, hasWildcard } from '../context/glob.js';
import { isOpaque } from './xattr.js';

const MAX_SYMLINKS = 255;

function lstatOrUndefined(p: string): Stats | undefined {
  try {
    return lstatSync(p);
  } catch {
    return undefined;
  }
}

function isWhiteout(st: Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

function parts(rel: string): string[] {
  return rel.split('/').filter((p) => p !== '' && p !== '.');
}

/** The merged view of a stack of layer folders. */
export class LayerView {
  constructor(private readonly lowerDirs: readonly string[]) {}

  /**
   * Each layer that provides `rel` (top-most first) with its entry there, until a layer hides
   * what lies below (a whiteout, an opaque folder on the way, a non-directory parent); with
   * `firstOnly`, the top-most only. A folder's opacity (an xattr, through a native binding) is
   * read only when the walk would go on to the layers below it.
   */
  private providers(rel: string, firstOnly = false): Array<{ dir: string; st: Stats }> {
    const comps = parts(rel);
    const out: Array<{ dir: string; st: Stats }> = [];
    for (const layer of this.lowerDirs) {
      const folders: string[] = []; // this layer's folders on the way, whose opacity hides the layers below
      let st: Stats | undefined = lstatOrUndefined(layer);
      for (let i = 0; i < comps.length && st !== undefined; i++) {
        const prefix = path.join(layer, ...comps.slice(0, i));
        if (i > 0 && st.isDirectory()) folders.push(prefix);
        st = lstatOrUndefined(path.join(prefix, comps[i]!));
        if (st === undefined) break;
        if (isWhiteout(st)) return out;
        if (i < comps.length - 1 && !st.isDirectory()) return out;
      }
      if (st !== undefined) {
        out.push({ dir: path.join(layer, ...comps), st });
        if (firstOnly || !st.isDirectory() || isOpaque(path.join(layer, ...comps))) return out;
      }
      if (folders.some(isOpaque)) return out;
    }
    return out;
  }

  /** The top-most layer entry that provides `rel` (host path and lstat), if any. */
  find(rel: string): { dir: string; st: Stats } | undefined {
    return this.providers(rel, true)[0];
  }

  /** lstat of a path of the image; undefined when it does not exist. */
  lstat(rel: string): Stats | undefined {
    return this.find(rel)?.st;
  }

  /** The host path of the layer entry that provides `rel` (the top-most), if any. */
  hostPath(rel: string): string | undefined {
    return this.find(rel)?.dir;
  }

  /** The names in a directory of the image (sorted); undefined when it is not a directory. */
  readdir(rel: string): string[] | undefined {
    const providers = this.providers(rel);
    if (providers[0]?.st.isDirectory() !== true) return undefined;
    const names = new Set<string>();
    const hidden = new Set<string>();
    for (const { dir, st } of providers) {
      if (!st.isDirectory()) break;
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (hidden.has(e.name) || names.has(e.name)) continue;
        if (e.isCharacterDevice() && isWhiteout(lstatSync(path.join(dir, e.name)))) hidden.add(e.name);
        else names.add(e.name);
      }
    }
    return [...names].sort();
  }

  /**
   * Resolves `p` as `resolveInRoot` does on a mounted root (chroot semantics: `..` stops at
   * `/`, absolute links restart from it); the final component is followed too. Returns an
   * absolute path of the image.
   */
  resolve(p: string): string {
    const resolved: string[] = [];
    const pending = parts(p).reverse();
    let links = 0;
    while (pending.length > 0) {
      const part = pending.pop()!;
      if (part === '..') {
        resolved.pop();
        continue;
      }
      const candidate = [...resolved, part].join('/');
      const top = this.find(candidate);
      if (top === undefined || !top.st.isSymbolicLink() || ++links > MAX_SYMLINKS) {
        resolved.push(part);
        continue;
      }
      const target = readlinkSync(top.dir);
      if (target.startsWith('/')) resolved.length = 0;
      pending.push(...parts(target).reverse());
    }
    return `/${resolved.join('/')}`;
  }

  /**
   * The image paths a COPY --from source pattern names: itself when it has no wildcard, else
   * every match (component by component, names sorted), as the copy will find them.
   */
  glob(pattern: string): string[] {
    if (!hasWildcard(pattern)) return [pattern];
    let cur = ['/'];
    for (const part of parts(pattern)) {
      const next: string[] = [];
      for (const c of cur) {
        if (!hasWildcard(part)) {
          next.push(path.posix.join(c, part));
          continue;
        }
        for (const n of this.readdir(this.resolve(c)) ?? []) if (matchSegment(part, n)) next.push(path.posix.join(c, n));
      }
      cur = next;
    }
    return cur;
  }
}
