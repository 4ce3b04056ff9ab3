/**
 * The init layer: the mount points a container needs (`/etc/hosts`, `/etc/hostname`,
 * `/etc/resolv.conf`, `/proc`, `/dev`, `/sys`), as the top-most lower dir of a step's overlay,
 * so they are never copied up into the step's layer. Its dirs copy the image's attributes, so a
 * copy-up of `/etc` (when the command writes there) records the image's mode and owner.
 */
import fs from 'node:fs';
import path from 'node:path';

/** Files in /etc the sandbox bind-mounts over (mount points, never part of a layer). */
export const HOST_FILES = ['hosts', 'hostname', 'resolv.conf'] as const;
/** Top-level directories the sandbox mounts on or into. */
export const INIT_DIRS = ['etc', 'proc', 'dev', 'sys'] as const;

function isWhiteout(st: fs.Stats): boolean {
  return st.isCharacterDevice() && st.rdev === 0;
}

/** The image's own top-level directory `name`, looking top-down through the layers. */
export function imageDir(lowerDirs: string[], name: string): fs.Stats | undefined {
  for (const dir of lowerDirs) {
    const st = fs.lstatSync(path.join(dir, name), { throwIfNoEntry: false });
    if (st === undefined) continue;
    return st.isDirectory() && !isWhiteout(st) ? st : undefined; // a whiteout or a file hides it
  }
  return undefined;
}

/** Gives `target` the mode, owner (and times) of `st`, or root's 0755 without one. */
export function copyAttrs(target: string, st: fs.Stats | undefined, opts: { withTimes: boolean; owner?: { uid: number; gid: number } }): void {
  fs.chmodSync(target, st ? st.mode & 0o7777 : 0o755);
  const owner = opts.owner ?? { uid: st?.uid ?? 0, gid: st?.gid ?? 0 };
  fs.chownSync(target, owner.uid, owner.gid);
  if (st && opts.withTimes) fs.utimesSync(target, st.atimeMs / 1000, st.mtimeMs / 1000);
}

/** Builds the init layer in the (new or stale) folder `init` for an image of `lowerDirs`. */
export function buildInitLayer(init: string, lowerDirs: string[]): void {
  fs.rmSync(init, { recursive: true, force: true });
  fs.mkdirSync(init);
  for (const d of INIT_DIRS) fs.mkdirSync(path.join(init, d));
  for (const f of HOST_FILES) fs.writeFileSync(path.join(init, 'etc', f), '', { mode: 0o644 });
  // Attributes last: creating the files above bumped the mtime of etc.
  for (const d of INIT_DIRS) copyAttrs(path.join(init, d), imageDir(lowerDirs, d), { withTimes: true });
}
