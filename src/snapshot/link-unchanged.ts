import { copyFileSync, chmodSync, lchownSync, linkSync, lstatSync, renameSync, rmSync, utimesSync, type BigIntStats } from 'node:fs';
import path from 'node:path';
import { SlipwayError } from '../errors.js';

/** A file a COPY left empty in its layer (`Placed`), by its path in the rootfs. */
export interface PlacedFile { rel: string; src: string; size: number; uid: number; gid: number; mode: number; atime: Date; mtime: Date }

/**
 * Fills the files a COPY left empty in its new layer (`upperDir`, no longer mounted): each is
 * replaced by a hard link to the same path in the step's earlier layer (`layerDir`) when that
 * file is a regular file with the size, mode, owner and mtime the copy would have given it (its content
 * is known to be the same: the caller named only files whose digest did not change); otherwise
 * its content is copied from its source. Layers are never changed once made, so a file may be
 * shared between them, as a hard link within a layer never is here: an earlier inode is linked
 * once at most. The earlier layer is read only through real directories (no symlink is followed
 * there). The links are made in `scratchDir` and renamed into place. Returns how many were linked.
 */
export function linkUnchanged(o: { upperDir: string; scratchDir: string; layerDir: string; files: PlacedFile[] }): number {
  const realDirs = new Set<string>();
  const inodes = new Set<string>();
  // A path placed twice holds the later source (the copy replaced the first); it is not linked.
  const last = new Map<string, { i: number; twice: boolean }>();
  o.files.forEach((f, i) => {
    if (!f.rel.startsWith('/') || f.rel.split('/').includes('..')) throw new SlipwayError('ERR_INTERNAL', `linkUnchanged: bad path ${f.rel}`);
    last.set(f.rel, { i, twice: last.has(f.rel) });
  });
  // Renaming into a folder sets its times, which the copy had set last: they are put back.
  const folders = new Map<string, BigIntStats>();
  for (const f of o.files) {
    const dir = o.upperDir + path.posix.dirname(f.rel);
    if (!folders.has(dir)) folders.set(dir, lstatSync(dir, { bigint: true }));
  }
  let linked = 0;
  for (const [i, f] of o.files.entries()) {
    const at = last.get(f.rel)!;
    if (at.i !== i) continue;
    const up = o.upperDir + f.rel;
    const ph = lstatSync(up, { bigint: true });
    if (!ph.isFile() || ph.size !== 0n) throw new SlipwayError('ERR_INTERNAL', `linkUnchanged: ${f.rel} is not the empty file the copy left`);
    const old = at.twice ? undefined : earlierFile(o.layerDir, f.rel, realDirs);
    const key = old ? `${old.dev}:${old.ino}` : '';
    if (old && sameFile(old, f) && !inodes.has(key)) {
      const tmp = path.join(o.scratchDir, `link-${i}`);
      try {
        linkSync(o.layerDir + f.rel, tmp);
        renameSync(tmp, up);
        inodes.add(key);
        linked++;
        continue;
      } catch {
        rmSync(tmp, { force: true }); // gone meanwhile (rmi), or too many links: copied below
      }
    }
    copyWithAttributes(f.src, up, f);
  }
  for (const [dir, st] of folders) utimesSync(dir, asSetBefore(st.atimeNs), asSetBefore(st.mtimeNs));
  return linked;
}

/** A COPY's copy of one file: its content, then owner, permission bits (after the chown, which clears set-id bits) and times. */
export function copyWithAttributes(src: string, dst: string, a: { uid: number; gid: number; mode: number; atime: Date; mtime: Date }): void {
  copyFileSync(src, dst);
  lchownSync(dst, a.uid, a.gid);
  chmodSync(dst, a.mode);
  utimesSync(dst, a.atime, a.mtime);
}

/**
 * A time that was set from a Date (whole milliseconds), as a Date that sets it again: the
 * nearest millisecond, since libuv may keep it a few nanoseconds below (and Node.js versions
 * differ there). Any other time keeps its millisecond.
 */
function asSetBefore(ns: bigint): Date {
  return new Date(Number(nearestMs(ns)));
}

function nearestMs(ns: bigint): bigint {
  return (ns + 500_000n) / 1_000_000n;
}

/** The earlier file has what the copy would give this one: size, owner, permission bits, mtime (to the millisecond it was set with). */
function sameFile(old: BigIntStats, f: PlacedFile): boolean {
  return old.isFile() && old.size === BigInt(f.size) && Number(old.mode & 0o7777n) === f.mode && old.uid === BigInt(f.uid) && old.gid === BigInt(f.gid)
    && nearestMs(old.mtimeNs) === BigInt(f.mtime.getTime());
}

/** The earlier layer's file at `rel` when every folder on the way is a real directory there; else undefined. */
function earlierFile(layerDir: string, rel: string, realDirs: Set<string>): BigIntStats | undefined {
  const parts = rel.split('/').filter((p) => p !== '');
  let dir = '';
  for (const part of parts.slice(0, -1)) {
    dir = `${dir}/${part}`;
    if (realDirs.has(dir)) continue;
    const st = lstatSync(layerDir + dir, { throwIfNoEntry: false });
    if (!st?.isDirectory()) return undefined;
    realDirs.add(dir);
  }
  return lstatSync(layerDir + rel, { bigint: true, throwIfNoEntry: false });
}
