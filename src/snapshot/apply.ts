import { chmod, lchown, link, lstat, mkdir, rm, utimes } from 'node:fs/promises';
import { dirname, posix, resolve as resolveHost } from 'node:path';
import type { Readable } from 'node:stream';
import { badArchive, createNode, entryMeta, readTar, setMeta, type EntryMeta, type TarHeader } from './tar-read.js';
import { resolveInRoot } from './resolve-in-root.js';
import { mkdirpExact } from '../fs.js';

/**
 * Extracts a plain tar into a mounted rootfs the way Docker's ADD does (archive.Unpack with no
 * whiteout conversion, so `.wh.*` entries stay ordinary files). Entry names are cleaned so that
 * `..` and a leading `/` stay at `destInRoot`; each path is then resolved inside `root` with
 * `resolveInRoot` (parents follow symlinks inside the root, the final component never).
 * Existing directories are merged, anything else at the path is replaced. Owners come from the
 * archive unless `opts.uid`/`opts.gid` are given; modes keep setuid/setgid/sticky; directory
 * modes and mtimes are set after all entries. Nothing outside `root` is ever written.
 *
 * Docker's legacy builder chroots into the (already resolved) destination, so absolute symlinks
 * met while extracting resolve from the destination rather than the rootfs; callers that need
 * that pass `root = await resolveInRoot(rootfs, dest)` and `destInRoot = '/'`.
 */
export async function applyTarToRoot(
  input: NodeJS.ReadableStream,
  root: string,
  destInRoot: string,
  opts: { uid?: number; gid?: number } = {},
): Promise<void> {
  const applier = new RootApplier(resolveHost(root), posix.join('/', destInRoot), opts);
  mkdirpExact(await resolveInRoot(applier.root, applier.dest), 0o755);
  await readTar(input, (h, body) => applier.entry(h, body));
  await applier.finish();
}

/** Cleans an archive path against `/`: `..` cannot climb above it, a leading `/` is dropped. */
function cleanName(name: string): string {
  if (name.includes('\0')) throw badArchive(`entry name contains NUL: ${JSON.stringify(name)}`);
  return posix.normalize(`/${name}`).replace(/\/+$/, '');
}

class RootApplier {
  /** Host path -> logical path and metadata of directory entries, applied at the end. */
  private readonly dirs = new Map<string, { logical: string; meta: EntryMeta }>();

  constructor(
    readonly root: string,
    readonly dest: string,
    private readonly owner: { uid?: number; gid?: number },
  ) {}

  private meta(h: TarHeader): EntryMeta {
    const m = entryMeta(h);
    return { ...m, uid: this.owner.uid ?? m.uid, gid: this.owner.gid ?? m.gid };
  }

  async entry(h: TarHeader, body: Readable): Promise<void> {
    const name = cleanName(h.name ?? '');
    if (name === '') return; // the archive's `.`: Docker skips it
    const logical = posix.join(this.dest, name);
    const host = await resolveInRoot(this.root, logical, { followFinal: false });
    if (host === this.root) return; // never replace the root itself
    const meta = this.meta(h);
    await this.ensureParent(host);
    const existing = await lstat(host).catch(() => null);
    const isDir = h.type === 'directory';
    if (existing !== null && !(existing.isDirectory() && isDir)) {
      // Like Docker: remove and replace. rm does not follow a final symlink.
      await rm(host, { recursive: true, force: true });
      this.forget(host);
    }
    if (isDir) {
      if (existing === null || !existing.isDirectory()) await mkdir(host, { mode: 0o700 });
      if (process.getuid?.() === 0) await lchown(host, meta.uid, meta.gid);
      this.dirs.set(host, { logical, meta });
      return;
    }
    if (h.type === 'link') return this.hardlink(host, h.linkname ?? '', meta);
    await createNode(host, h, body, meta);
  }

  /** Creates missing parents 0755 owned by root, as Docker's Unpack does. */
  private async ensureParent(host: string): Promise<void> {
    const parent = dirname(host);
    const st = await lstat(parent).catch(() => null);
    if (st === null) mkdirpExact(parent, 0o755);
    else if (!st.isDirectory()) throw badArchive(`cannot extract ${host}: ${parent} is not a directory`);
  }

  /** Hard-link targets are archive paths too, resolved inside the root; link(2) keeps a final symlink. */
  private async hardlink(host: string, linkname: string, meta: EntryMeta): Promise<void> {
    const name = cleanName(linkname);
    if (name === '') throw badArchive(`hard link ${host} has an empty target`);
    const target = await resolveInRoot(this.root, posix.join(this.dest, name), { followFinal: false });
    const st = await lstat(target).catch(() => null);
    if (st === null || st.isDirectory() || target === host) {
      throw badArchive(`hard link target ${JSON.stringify(linkname)} is missing or a directory`);
    }
    await link(target, host);
    // Docker skips chmod and chtimes when the target is a symlink (there is no lchmod).
    if (st.isSymbolicLink()) {
      if (process.getuid?.() === 0) await lchown(host, meta.uid, meta.gid);
    } else {
      await setMeta(host, meta, { chmod: true });
    }
  }

  private forget(host: string): void {
    for (const p of [...this.dirs.keys()]) if (p === host || p.startsWith(`${host}/`)) this.dirs.delete(p);
  }

  /** Directory modes and mtimes, deepest first, only where the path still resolves to the same directory. */
  async finish(): Promise<void> {
    const dirs = [...this.dirs].sort((a, b) => b[0].length - a[0].length);
    for (const [host, { logical, meta }] of dirs) {
      if ((await resolveInRoot(this.root, logical, { followFinal: false })) !== host) continue;
      const st = await lstat(host).catch(() => null);
      if (st === null || !st.isDirectory()) continue;
      await chmod(host, meta.mode);
      await utimes(host, meta.mtime, meta.mtime);
    }
  }
}
