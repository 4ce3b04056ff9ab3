import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { chmod, lchown, link, lstat, lutimes, mkdir, open, readdir, rm, symlink, utimes } from 'node:fs/promises';
import { posix, resolve as resolveHost } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract, type Header } from 'tar-stream';
import { SlipwayError } from '../errors.js';
import { markOpaque } from './xattr.js';
import { hostTool, type HostTool } from './host-tools.js';

/** A tar-stream header with the PAX records it carried (tar-stream's types omit them). */
export type TarHeader = Omit<Header, 'pax'> & { pax?: Record<string, string> | null };

/** Owner, permission bits (incl. setuid/setgid/sticky) and mtime in seconds of one entry. */
export interface EntryMeta {
  uid: number;
  gid: number;
  mode: number;
  mtime: number;
}

const WH = '.wh.';
const WH_META = '.wh..wh.';
const WH_OPAQUE = '.wh..wh..opq';

/**
 * Sniffs the first bytes of `input` and returns the decompressed stream: gzip through zlib,
 * bzip2 and xz through `bzip2 -dc` / `xz -dc`; `tar` (ustar magic) and `unknown` pass through.
 * Like Docker's DecompressStream; zstd is reported as `unknown`.
 */
export async function decompressStream(
  input: NodeJS.ReadableStream,
): Promise<{ stream: NodeJS.ReadableStream; kind: 'tar' | 'gzip' | 'bzip2' | 'xz' | 'unknown' }> {
  const it = (input as AsyncIterable<Buffer | string>)[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let have = 0;
  let ended = false;
  while (have < 262 && !ended) {
    const r = await it.next();
    if (r.done === true) ended = true;
    else {
      const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
      head.push(b);
      have += b.length;
    }
  }
  const first = Buffer.concat(head);
  // The generator pulls from the original iterator on demand, so backpressure is kept.
  const whole = Readable.from(
    (async function* () {
      if (first.length > 0) yield first;
      if (ended) return;
      for (;;) {
        const r = await it.next();
        if (r.done === true) return;
        yield Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
      }
    })(),
  );
  const starts = (bytes: number[]): boolean => bytes.every((b, i) => first[i] === b);
  if (starts([0x1f, 0x8b, 0x08])) {
    const gunzip = createGunzip();
    // pipeline (not pipe) so that a read error of the source reaches the consumer.
    pipeline(whole, gunzip).catch(() => undefined);
    return { stream: gunzip, kind: 'gzip' };
  }
  if (starts([0x42, 0x5a, 0x68])) return { stream: viaCommand(whole, 'bzip2'), kind: 'bzip2' };
  if (starts([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return { stream: viaCommand(whole, 'xz'), kind: 'xz' };
  if (first.subarray(257, 262).toString('latin1') === 'ustar') return { stream: whole, kind: 'tar' };
  return { stream: whole, kind: 'unknown' };
}

/**
 * Pipes `src` through `<cmd> -dc`; a failing command surfaces as an ERR_BAD_ARCHIVE stream error.
 * A decompressor that is not installed fails here, before anything is read.
 */
function viaCommand(src: Readable, cmd: 'bzip2' | 'xz'): NodeJS.ReadableStream {
  const out = new PassThrough();
  const child = spawn(hostTool(cmd), ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // EPIPE when the decompressor exits early is reported through its exit status instead.
  pipeline(src, child.stdin).catch(() => undefined);
  child.stdout.pipe(out, { end: false });
  child.on('error', (e) => out.destroy(e));
  child.on('close', (code) => {
    if (code === 0) out.end();
    else out.destroy(new SlipwayError('ERR_BAD_ARCHIVE', `${cmd} -dc failed (${code}): ${stderr.trim()}`));
  });
  out.on('close', () => {
    if (child.exitCode === null) child.kill();
  });
  return out;
}

/**
 * Reads a plain tar, calling `onEntry` for each entry in order (the body is drained after it
 * returns), and hashes every input byte, trailing padding included, as Docker's diffID does.
 * Parse errors become ERR_BAD_ARCHIVE; errors thrown by `onEntry` propagate unchanged.
 */
export async function readTar(
  input: NodeJS.ReadableStream,
  onEntry: (header: TarHeader, body: Readable) => Promise<void>,
): Promise<{ diffId: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  const ex = tarExtract();
  const feeding = pipeline(
    input,
    async function* (src: AsyncIterable<unknown>) {
      for await (const chunk of src) {
        const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
        hash.update(b);
        size += b.length;
        yield b;
      }
    },
    ex as unknown as NodeJS.WritableStream, // a streamx Writable, compatible with pipeline
  );
  feeding.catch(() => undefined); // awaited below; this only prevents an unhandled rejection
  // The first error of the parser or of the input (our own destroy() below carries none).
  let readError: Error | null = null;
  ex.on('error', (e: Error) => (readError ??= e));
  const entries = ex[Symbol.asyncIterator]();
  for (;;) {
    let next: Awaited<ReturnType<typeof entries.next>>;
    try {
      next = await entries.next();
    } catch (e) {
      throw badArchive(`cannot read tar: ${(readError ?? (e as Error)).message}`);
    }
    if (next.done === true) break;
    // Wrapped in a Node Readable: Node's pipeline never settles on a streamx stream that was
    // destroyed before it was handed over (a truncated tar), but it does on this wrapper.
    const body = Readable.from(next.value);
    try {
      await onEntry(next.value.header as TarHeader, body);
      for await (const _ of body) void _;
    } catch (e) {
      ex.destroy();
      await feeding.catch(() => undefined);
      if (readError !== null) throw badArchive(`cannot read tar: ${(readError as Error).message}`);
      throw e;
    }
  }
  try {
    await feeding;
  } catch (e) {
    throw badArchive(`cannot read tar: ${(e as Error).message}`);
  }
  return { diffId: `sha256:${hash.digest('hex')}`, size };
}

/** Header metadata with PAX `uid`/`gid`/`mtime` records taking precedence over the ustar fields. */
export function entryMeta(h: TarHeader): EntryMeta {
  const pax = h.pax ?? {};
  const num = (v: string | undefined, fallback: number): number => {
    const n = v === undefined ? NaN : Number(v);
    return Number.isFinite(n) ? n : fallback;
  };
  return {
    uid: num(pax['uid'], h.uid ?? 0),
    gid: num(pax['gid'], h.gid ?? 0),
    mode: (h.mode ?? 0) & 0o7777,
    mtime: num(pax['mtime'], (h.mtime?.getTime() ?? 0) / 1000),
  };
}

/** Creates a device or fifo with mknod(1) (Node has no mknod). `path` must not exist. */
export async function makeNode(path: string, kind: 'c' | 'b' | 'p', major = 0, minor = 0): Promise<void> {
  const args = kind === 'p' ? ['-m', '0', '--', path, 'p'] : ['-m', '0', '--', path, kind, String(major), String(minor)];
  await run('mknod', args);
}

/** Runs a host tool to completion, rejecting with its stderr on a non-zero exit. */
export function run(cmd: HostTool, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(hostTool(cmd), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${code}): ${err.trim()}`));
    });
  });
}

/**
 * Creates the non-directory, non-hardlink entry `header` at `hostPath` (which must not exist and
 * whose parents must be real directories), then sets owner, mode and mtime in Docker's order:
 * lchown before chmod, because chown clears setuid/setgid. `O_EXCL|O_NOFOLLOW` guarantees a
 * file is never written through a symlink.
 */
export async function createNode(hostPath: string, header: TarHeader, body: Readable, meta: EntryMeta): Promise<void> {
  switch (header.type) {
    case 'file':
    case 'contiguous-file': {
      const fh = await open(hostPath, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
      await pipeline(body, fh.createWriteStream()); // closes fh
      break;
    }
    case 'symlink':
      if (!header.linkname) throw badArchive(`symlink ${header.name} has an empty target`);
      await symlink(header.linkname, hostPath);
      break;
    case 'character-device':
    case 'block-device':
      await makeNode(hostPath, header.type === 'character-device' ? 'c' : 'b', header.devmajor ?? 0, header.devminor ?? 0);
      break;
    case 'fifo':
      await makeNode(hostPath, 'p');
      break;
    default:
      throw badArchive(`unsupported tar entry type ${String(header.type)} for ${header.name}`);
  }
  await setMeta(hostPath, meta, { chmod: header.type !== 'symlink' });
}

/** lchown (when root), chmod unless `chmod` is false (symlinks), then lutimes. */
export async function setMeta(hostPath: string, meta: EntryMeta, opts: { chmod: boolean }): Promise<void> {
  if (process.getuid?.() === 0) await lchown(hostPath, meta.uid, meta.gid);
  if (opts.chmod) await chmod(hostPath, meta.mode);
  await lutimes(hostPath, meta.mtime, meta.mtime);
}

/** An ERR_BAD_ARCHIVE error. */
export function badArchive(message: string): SlipwayError {
  return new SlipwayError('ERR_BAD_ARCHIVE', `invalid archive: ${message}`);
}

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
