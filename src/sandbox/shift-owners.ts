/**
 * Owners in a step's new layer, mapped back. The overlay's lower layers are idmapped into the
 * step's user namespace, but its upper dir cannot be (overlayfs refuses an idmapped upper
 * layer), so what the step creates lands there with host ids: root's files as `uid.host`.
 * This walk maps them back to the image's ids before the layer is packed, so a file made by
 * root in a RUN is uid 0 in the layer. It costs what the layer holds, never the rootfs.
 */
import { chmodSync, lchownSync, lstatSync, readdirSync } from 'node:fs';
import path from 'node:path';
import type { IdMapping, IdRange } from './userns.js';

function back(r: IdRange, id: number): number {
  return id >= r.host && id < r.host + r.count ? id - r.host : id;
}

/** The host ids a dir must have for the step to see `uid`/`gid` (the inverse of shiftOwnersBack). */
export function hostOwner(m: IdMapping | undefined, uid: number, gid: number): { uid: number; gid: number } {
  if (m === undefined) return { uid, gid };
  return { uid: uid < m.uid.count ? m.uid.host + uid : uid, gid: gid < m.gid.count ? m.gid.host + gid : gid };
}

/**
 * Maps every owner under `dir` (itself included) that lies in the step's range back to the
 * container's id. Owners outside the range (the kernel's own whiteouts, 0/0) stay as they are.
 * chown clears set-user-ID and set-group-ID bits, so those are put back.
 */
export function shiftOwnersBack(dir: string, m: IdMapping): void {
  shiftTree(dir, (st) => ownerBack(m, st.uid, st.gid));
}

/** The rule of shiftOwnersBack for one owner. */
function ownerBack(m: IdMapping, uid: number, gid: number): [number, number] {
  return [back(m.uid, uid), back(m.gid, gid)];
}

/**
 * The other way: a vfs rootfs (a plain copy, which a bind mount cannot idmap on every
 * filesystem) gets the owners the step's user namespace sees as the image's.
 */
export function shiftOwnersForward(dir: string, m: IdMapping): void {
  shiftTree(dir, (st) => {
    const o = hostOwner(m, st.uid, st.gid);
    return [o.uid, o.gid];
  });
}

/** What a walk that shifts owners needs of a path's lstat (number or bigint stats). */
export interface OwnedStats { uid: number | bigint; gid: number | bigint; mode: number | bigint; isSymbolicLink(): boolean }

/**
 * One path's owner mapped back (shiftOwnersBack's rule), for a walk that lstats every path
 * anyway (pack): returns the owner the path has now.
 */
export function shiftOneBack(p: string, st: OwnedStats, m: IdMapping): [number, number] {
  return shiftOne(p, st, ownerBack(m, Number(st.uid), Number(st.gid)));
}

function shiftOne(p: string, st: OwnedStats, [uid, gid]: [number, number]): [number, number] {
  if (uid !== Number(st.uid) || gid !== Number(st.gid)) {
    lchownSync(p, uid, gid);
    const mode = Number(st.mode);
    if (!st.isSymbolicLink() && (mode & 0o6000) !== 0) chmodSync(p, mode & 0o7777);
  }
  return [uid, gid];
}

function shiftTree(dir: string, map: (st: { uid: number; gid: number }) => [number, number]): void {
  const visit = (p: string): void => {
    const st = lstatSync(p);
    shiftOne(p, st, map(st));
    if (st.isDirectory()) for (const name of readdirSync(p)) visit(path.join(p, name));
  };
  visit(dir);
}
