import fsSync, { createReadStream, type Stats } from 'node:fs';
import path from 'node:path';
import { resolveInRootSync as resolveInRoot } from './resolve-in-root.js';
import { applyTarToRoot } from './apply.js';
import { decompressStream } from './tar-read.js';
import { SlipwayError } from '../errors.js';
import { mkdirpExact } from '../fs.js';
import { hasWildcard, matchSegment } from '../context/glob.js';
import { specialFileError, specialKind } from '../context/special-file.js';
import { copyWithAttributes } from './link-unchanged.js';

/** One path below a copied folder; `implied` folders (kept only for what an exception brought back) are 0755. */
export interface CopyEntry { path: string; type: string; implied?: boolean }

/** What one COPY/ADD (or WORKDIR) writes into a mounted rootfs. Plain data: it crosses a process boundary. */
export interface CopyOp {
  kind: 'COPY' | 'ADD' | 'MKDIR';
  /** Sources as absolute host paths, each resolved inside its source root already. */
  sources: Array<{ abs: string; rel: string; entries?: CopyEntry[]; dest?: string }>;
  /** Destination inside the rootfs, absolute (WORKDIR applied); a trailing `/` is kept. */
  dest: string;
  uid: number;
  gid: number;
  /** --chown was given: parents a file COPY creates get the owner too. */
  chownGiven: boolean;
  /** --chmod as octal bits, applied to every copied entry. */
  chmod: number | undefined;
  /** Keep setuid/setgid bits (BuildKit) or drop them (legacy). */
  keepSpecialBits: boolean;
  /** Downloaded files (ADD <url>): copied as they are, never unpacked. */
  downloaded?: string[];
  /** COPY --from: the source image's layer folders (top first) and the paths named in it. */
  from?: { lowerDirs: string[]; paths: string[]; mounted?: string };
  /**
   * The earlier layer of this step and the source files (host paths) it holds unchanged: each is
   * left empty here (nothing more), for `linkUnchanged` to link from that layer once the rootfs
   * is unmounted, or to copy (`placed`). Only files of LINK_MIN bytes or more.
   */
  link?: { layerDir: string; files: string[] };
}

/** A file below which a copy costs less than a placeholder and a link. */
export const LINK_MIN = 64 * 1024;

/**
 * A file `copyInRoot` left empty (and nothing more) for `linkUnchanged`: where (host path), from
 * which source, and what the copy would have given it: size, owner, permission bits and times.
 */
export interface Placed { dst: string; src: string; size: number; uid: number; gid: number; mode: number; atime: Date; mtime: Date }

/** A COPY in progress: the op, and (with `link`) the files to place and those placed. */
type Copying = CopyOp & { placing?: { files: Set<string>; placed: Placed[] } };

/**
 * Runs inside the step's private mount namespace with the overlay mounted at `merged`:
 * performs COPY/ADD with Docker's destination rules. Every destination path is resolved
 * inside `merged` (chroot semantics), so a symlink in the image can never lead outside.
 */
export default async function copyInRoot(merged: string, given: CopyOp): Promise<{ ok: true; placed: Placed[] }> {
  const placed: Placed[] = [];
  const op: Copying = given.link ? { ...given, placing: { files: new Set(given.link.files), placed } } : { ...given };
  if (op.kind === 'MKDIR') {
    mkdirAll(merged, op.dest, 0, 0, undefined, 'MKDIR');
    return { ok: true, placed };
  }
  if (op.from) op.sources = resolveFromSources(op.from);
  const destIsDir = op.dest.endsWith('/') || op.sources.length > 1;
  const destHost = resolveInRoot(merged, op.dest);
  const existing = statOrNone(destHost);
  for (const src of op.sources) {
    const st = fsSync.statSync(src.abs);
    const special = specialKind(st);
    if (special) throw new SlipwayError('ERR_CONTEXT_PATH', `${op.kind} failed: ${specialFileError(src.rel, special).message}`);
    if (src.dest !== undefined) {
      // COPY --parents: this source has a destination of its own (its path below the context).
      copyToOwnDest(merged, src as { abs: string; rel: string; entries?: CopyEntry[]; dest: string }, st, op);
      continue;
    }
    if (st.isDirectory()) {
      // Parents a folder COPY creates stay root's; the folder itself, when new, gets the owner.
      mkdirAll(merged, op.dest, 0, 0, { uid: op.uid, gid: op.gid });
      copyDirContents(src.abs, resolveInRoot(merged, op.dest), src.entries ?? walkAll(src.abs), op);
      continue;
    }
    if (op.kind === 'ADD' && !op.downloaded?.includes(src.abs) && (await isArchive(src.abs))) {
      mkdirAll(merged, op.dest, 0, 0);
      const { stream } = await decompressStream(createReadStream(src.abs));
      const opts = op.chownGiven ? { uid: op.uid, gid: op.gid } : {};
      // Docker unpacks chrooted into the (resolved) destination: the archive's `..`, absolute
      // symlinks and links that point upward all stay inside it.
      await applyTarToRoot(stream, resolveInRoot(merged, op.dest), '/', opts);
      continue;
    }
    let target: string;
    if (destIsDir || existing?.isDirectory()) {
      mkdirAll(merged, op.dest, op.chownGiven ? op.uid : 0, op.chownGiven ? op.gid : 0);
      target = path.posix.join(op.dest, path.posix.basename(src.rel === '.' ? src.abs : src.rel));
    } else {
      mkdirAll(merged, path.posix.dirname(op.dest), op.chownGiven ? op.uid : 0, op.chownGiven ? op.gid : 0);
      target = op.dest;
    }
    const dst = resolveInRoot(merged, target, { followFinal: false });
    copyFile(src.abs, dst, st, op, lstatOrNone(dst));
  }
  return { ok: true, placed };
}

/** A source copied to its own path (`--parents`): a folder's contents into it, a file as it. */
function copyToOwnDest(merged: string, src: { abs: string; rel: string; entries?: CopyEntry[]; dest: string }, st: Stats, op: CopyOp): void {
  const owner = op.chownGiven ? { uid: op.uid, gid: op.gid } : { uid: 0, gid: 0 };
  if (st.isDirectory()) {
    mkdirAll(merged, src.dest, owner.uid, owner.gid);
    copyDirContents(src.abs, resolveInRoot(merged, src.dest), src.entries ?? walkAll(src.abs), op);
    return;
  }
  mkdirAll(merged, path.posix.dirname(src.dest), owner.uid, owner.gid);
  const dst = resolveInRoot(merged, src.dest, { followFinal: false });
  copyFile(src.abs, dst, st, op, lstatOrNone(dst));
}

async function isArchive(file: string): Promise<boolean> {
  const { stream, kind } = await decompressStream(createReadStream(file));
  // A tar has "ustar" at offset 257 of its first header (after decompression).
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of stream) {
    chunks.push(c as Buffer);
    n += (c as Buffer).length;
    if (n >= 512) break;
  }
  (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
  const head = Buffer.concat(chunks);
  if (head.length < 512) return false;
  const magic = head.subarray(257, 262).toString('latin1');
  if (magic === 'ustar') return true;
  // old-style tar: verify the header checksum
  const stored = Number.parseInt(head.subarray(148, 156).toString('latin1').replace(/\0.*$/, '').trim(), 8);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : head[i]!;
  return kind !== 'unknown' ? sum === stored : sum === stored && stored > 0;
}

/**
 * mkdir -p inside the root: missing components get 0755 and the given owner. A file in the way
 * fails with the daemon's words (its host paths made paths in the image): a WORKDIR's
 * `Cannot mkdir: /f is not a directory`; below a file, the lstat of the next component fails.
 */
function mkdirAll(root: string, dir: string, uid: number, gid: number, leaf?: { uid: number; gid: number }, kind: CopyOp['kind'] = 'COPY'): void {
  const parts = dir.split('/').filter((p) => p !== '' && p !== '.');
  let cur = '/';
  for (const [i, p] of parts.entries()) {
    cur = path.posix.join(cur, p);
    const host = resolveInRoot(root, cur);
    const st = lstatOrUndefined(host);
    if (st?.isDirectory()) continue;
    if (st) throw notADirectory(kind, dir, cur, parts[i + 1]);
    // `host` has no symlink left in it (resolveInRoot), but a symlink's target may lack several
    // folders: they are made too, inside the root, as Docker's MkdirAll on the resolved path does.
    mkdirpExact(host, 0o755);
    const owner = leaf && i === parts.length - 1 ? leaf : { uid, gid };
    fsSync.lchownSync(host, owner.uid, owner.gid);
  }
}

function modeOf(mode: number, op: CopyOp): number {
  if (op.chmod !== undefined) return op.chmod;
  return op.keepSpecialBits ? mode & 0o7777 : mode & 0o1777;
}

/*
 * The per-entry work below is synchronous on purpose: the worker thread (or copy script) runs
 * one step and nothing else, and a COPY of thousands of small files is a long run of metadata
 * calls, each of which costs a thread-pool round trip when awaited (a 2,000-file context spent
 * 80 % of its COPY waiting so).
 */

/** lstat that answers undefined for a missing path. */
function lstatOrNone(p: string): Stats | undefined {
  return fsSync.lstatSync(p, { throwIfNoEntry: false });
}

/** lstat(2) of `p`; undefined when it cannot be (missing, a file in the path). */
function lstatOrUndefined(p: string): Stats | undefined {
  try {
    return fsSync.lstatSync(p);
  } catch {
    return undefined;
  }
}

/** stat(2) of `p`, followed; undefined when it cannot be (missing, a dangling link, a file in the path). */
function statOrNone(p: string): Stats | undefined {
  try {
    return fsSync.statSync(p);
  } catch {
    return undefined;
  }
}

function notADirectory(kind: CopyOp['kind'], dir: string, cur: string, next: string | undefined): SlipwayError {
  const why = next !== undefined ? `lstat ${path.posix.join(cur, next)}: not a directory`
    : kind === 'MKDIR' ? `Cannot mkdir: ${dir} is not a directory` : `failed to create new directory: mkdir ${cur}: not a directory`;
  return new SlipwayError('ERR_COPY_DEST', kind === 'MKDIR' ? why : `failed to copy files: ${why}`);
}

/** A folder's names; none when it cannot be read (missing, not a folder). */
function readdirOrNone(p: string): string[] {
  try {
    return fsSync.readdirSync(p);
  } catch {
    return [];
  }
}

/**
 * Copies one regular file over whatever is at `dstHost` (`old`, its lstat): a folder there goes,
 * with all below it, as the daemon's untar removes it. A file with other names is never left to
 * `linkUnchanged`: a later name in the same folder COPY links to this one (`copyDirContents`).
 */
function copyFile(srcAbs: string, dstHost: string, st: Stats, op: Copying, old: Stats | undefined): void {
  if (old) fsSync.rmSync(dstHost, { recursive: true, force: true });
  if (op.placing !== undefined && st.size >= LINK_MIN && st.nlink === 1 && op.placing.files.has(srcAbs)) {
    // The overlay makes the path (parents copied up, anything in the way gone); the rest is linkUnchanged's.
    fsSync.closeSync(fsSync.openSync(dstHost, 'wx', 0o600));
    op.placing.placed.push({ dst: dstHost, src: srcAbs, size: st.size, uid: op.uid, gid: op.gid, mode: modeOf(st.mode, op), atime: st.atime, mtime: st.mtime });
    return;
  }
  copyWithAttributes(srcAbs, dstHost, { uid: op.uid, gid: op.gid, mode: modeOf(st.mode, op), atime: st.atime, mtime: st.mtime });
}

/**
 * One entry of a folder COPY; a folder's attributes are returned, to set its times at the end.
 * `linked` maps a source file with several names (device:inode) to where its first name was
 * copied: a later name becomes a hard link to it, as the daemon's tar of the folder makes it.
 */
function copyEntry(s: string, d: string, e: CopyEntry, op: CopyOp, linked: Map<string, string>): [string, Stats] | undefined {
  const st = fsSync.lstatSync(s);
  const old = lstatOrNone(d);
  if (st.isDirectory()) {
    if (old && !old.isDirectory()) fsSync.rmSync(d, { recursive: true, force: true });
    if (!old || !old.isDirectory()) fsSync.mkdirSync(d);
    fsSync.lchownSync(d, op.uid, op.gid);
    fsSync.chmodSync(d, modeOf(e.implied ? 0o40755 : st.mode, op));
    return [d, st];
  }
  if (st.isSymbolicLink()) {
    if (old) fsSync.rmSync(d, { recursive: true, force: true });
    fsSync.symlinkSync(fsSync.readlinkSync(s), d);
    fsSync.lchownSync(d, op.uid, op.gid);
    fsSync.lutimesSync(d, st.atime, st.mtime);
  } else if (st.isFile()) {
    const inode = st.nlink > 1 ? `${st.dev}:${st.ino}` : undefined;
    const first = inode !== undefined ? linked.get(inode) : undefined;
    if (first !== undefined) {
      if (old) fsSync.rmSync(d, { recursive: true, force: true });
      fsSync.linkSync(first, d);
      return undefined;
    }
    copyFile(s, d, st, op, old);
    if (inode !== undefined) linked.set(inode, d);
  }
  return undefined;
}

/**
 * Copies `entries` (parents first) of `srcDir` below `dstHost`, a folder resolved inside the
 * rootfs. Each entry's parent is a real folder by then (made or checked by an earlier entry; a
 * symlink in the way is replaced), so no path below `dstHost` can lead out of the rootfs.
 */
function copyDirContents(srcDir: string, dstHost: string, entries: CopyEntry[], op: CopyOp): void {
  const dirs: Array<[string, Stats]> = [];
  const linked = new Map<string, string>();
  for (const e of entries) {
    if (e.path === '.') continue;
    const dir = copyEntry(path.join(srcDir, e.path), path.join(dstHost, e.path), e, op, linked);
    if (dir) dirs.push(dir);
  }
  // Directory mtimes last: writing their contents bumped them.
  for (const [d, st] of dirs.reverse()) fsSync.utimesSync(d, st.atime, st.mtime);
}

/** Every entry below a folder, parents before children, names sorted. */
function walkAll(dir: string, rel = ''): CopyEntry[] {
  const out: CopyEntry[] = [];
  for (const name of fsSync.readdirSync(dir).sort()) {
    const r = rel === '' ? name : `${rel}/${name}`;
    const st = fsSync.lstatSync(path.join(dir, name));
    // Named pipes, sockets and devices (a COPY --from of a folder holding one) are skipped.
    if (specialKind(st)) continue;
    out.push({ path: r, type: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file' });
    if (st.isDirectory()) out.push(...walkAll(path.join(dir, name), r));
  }
  return out;
}

/**
 * COPY --from: resolves the named paths, wildcards included, inside the source image: its one
 * layer folder, or the read-only overlay of its layers that the shim mounted (`mounted`).
 */
function resolveFromSources(from: NonNullable<CopyOp['from']>): CopyOp['sources'] {
  const root = from.lowerDirs.length === 1 ? from.lowerDirs[0]! : from.mounted;
  if (root === undefined) throw new SlipwayError('ERR_INTERNAL', 'COPY --from: the source image is not mounted');
  const out: CopyOp['sources'] = [];
  for (const p of from.paths) {
    const matches = hasWildcard(p) ? globInRoot(root, p) : [p];
    if (matches.length === 0) throw new SlipwayError('ERR_FILE_NOT_FOUND', `COPY failed: no source files were specified`);
    for (const m of matches) {
      const abs = resolveInRoot(root, m);
      if (!lstatOrUndefined(abs)) {
        throw new SlipwayError('ERR_FILE_NOT_FOUND', `COPY failed: stat ${m}: file does not exist`);
      }
      out.push({ abs, rel: m.replace(/^\/+/, '') || '.' });
    }
  }
  return out;
}

function globInRoot(root: string, pattern: string): string[] {
  const parts = pattern.split('/').filter((x) => x !== '' && x !== '.');
  let cur = ['/'];
  for (const part of parts) {
    const next: string[] = [];
    for (const c of cur) {
      if (!hasWildcard(part)) {
        next.push(path.posix.join(c, part));
        continue;
      }
      const host = resolveInRoot(root, c);
      const names = readdirOrNone(host);
      for (const n of names.sort()) if (matchSegment(part, n)) next.push(path.posix.join(c, n));
    }
    cur = next;
  }
  return cur;
}
