import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, statSync, type BigIntStats } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { initHash } from './key.js';
import { specialFileError, specialKind } from '../context/special-file.js';

/** One file the COPY selected, as it enters the cache key (never its mtime). */
export interface DigestEntry {
  /** Path relative to the folder it was selected by (`.` for that folder itself); a file source's own entry has its context path. */
  path: string;
  type: 'file' | 'dir' | 'symlink';
  /** Permission bits as they will be copied (Docker's legacy builder drops setuid/setgid). */
  mode: number;
  link?: string;
  /** xxh64 of the content (files). */
  hash?: string;
  /** A folder the build sees only because something below it was kept by a `.dockerignore` exception. */
  implied?: true;
}

/**
 * The stat cache: absolute path -> identity, content hash (xxh64) and Docker's tarsum of the
 * entry. A file is re-read when any identity field changed; ctime cannot be set back by
 * `touch -d`, so a same-size rewrite with its mtime restored is still re-read.
 */
export type StatCache = Record<string, { size: number; mtimeNs: string; ctimeNs: string; ino: string; hash: string; header: string; sum: string }>;

/** A selected source: its path relative to the context and its resolved host path. */
export interface SourceSpec {
  rel: string;
  abs: string;
  /** Set for ADD <url>: the file was downloaded. */
  url?: string;
  /** COPY --parents: where this source lands (else the step's destination rules apply). */
  dest?: string;
}

/** What the digest of a COPY's sources gives the scheduler. */
export interface SourcesDigest {
  entries: DigestEntry[][];
  /** Docker's legacy history hash: `file:<sha256>`, `dir:<sha256>` or `multi:<sha256>`. */
  legacyHash: string;
  /** Per source, `file:`/`dir:` legacy hash. */
  sourceHashes: string[];
  hashedBytes: number;
}

/**
 * Docker's tarsum v1 header of a context entry: the fields of the tar header the client sent
 * (name, mode with file-type bits, uid/gid 0, size, type flag, link name, empty user and group
 * names, device numbers), without the mtime.
 */
function tarsumHeader(name: string, st: BigIntStats, link: string): string {
  const perm = Number(st.mode) & 0o7777;
  let mode: number;
  let flag: string;
  let size = 0;
  if (st.isDirectory()) { mode = 0o40000 | perm; flag = '5'; name = `${name}/`; }
  else if (st.isSymbolicLink()) { mode = 0o120000 | perm; flag = '2'; }
  else { mode = 0o100000 | perm; flag = '0'; size = Number(st.size); }
  return `name${name}mode${mode}uid0gid0size${size}typeflag${flag}linkname${link}unamegnamedevmajor0devminor0`;
}

/** One read buffer per thread: digests run one at a time on a pool thread. */
let readBuffer: Buffer | undefined;

/**
 * xxh64 and Docker's tarsum of a file the caller saw as a regular file. Synchronous, in one
 * buffer: most context files are small, and a stream's and the thread pool's round trips per
 * file cost several times the hashing (measured by bench/io-cost). Opened non-blocking and
 * checked again on the descriptor, so a pipe or device swapped in since is never read; the last
 * component is not followed when `follow` is false (a walked entry, seen by lstat).
 */
async function hashFileBoth(file: string, name: string, header: string, follow: boolean): Promise<{ hash: string; sum: string; bytes: number }> {
  const x = (await initHash()).create64();
  const s = crypto.createHash('sha256').update(header);
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | (follow ? 0 : constants.O_NOFOLLOW));
  let bytes = 0;
  try {
    const kind = specialKind(fstatSync(fd));
    if (kind) throw specialFileError(name, kind);
    readBuffer ??= Buffer.allocUnsafe(1 << 20);
    for (let n = readSync(fd, readBuffer); n > 0; n = readSync(fd, readBuffer)) {
      const chunk = readBuffer.subarray(0, n);
      x.update(chunk);
      s.update(chunk);
      bytes += n;
    }
  } finally {
    closeSync(fd);
  }
  return { hash: x.digest().toString(16).padStart(16, '0'), sum: s.digest('hex'), bytes };
}

/** Thrown by a `cachedOnly` digest that met a file the stat cache cannot vouch for. */
export class NeedsHashing extends Error {
  constructor() {
    super('a file needs hashing');
  }
}

/** A context-relative path as the context tar names it: no `./`, `..` folded, no trailing `/`. */
export function contextPath(rel: string): string {
  const p = path.posix.normalize(rel).replace(/\/+$/, '');
  return p === '' || p === '.' ? '.' : p;
}

function hashStringSlice(prefix: string, list: string[]): string {
  return `${prefix}:${crypto.createHash('sha256').update(list.join(',')).digest('hex')}`;
}

/**
 * Digests the sources of a COPY/ADD: for every selected entry its relative path, type, mode,
 * link target and content hash, and Docker's legacy history hash of the whole set. Content
 * comes from the stat cache when (size, mtime, ctime, inode) are unchanged.
 */
export async function digestSources(
  sources: SourceSpec[], isIgnored: (rel: string) => boolean, statCache: StatCache,
  opts: { cachedOnly?: boolean; isImplied?: (rel: string) => boolean } = {},
): Promise<SourcesDigest> {
  const isImplied = opts.isImplied ?? (() => false);
  let hashedBytes = 0;
  const fileSums = async (abs: string, ctxRel: string, st: BigIntStats, follow = false): Promise<{ hash: string; sum: string }> => {
    const header = tarsumHeader(ctxRel, st, '');
    const id = { size: Number(st.size), mtimeNs: st.mtimeNs.toString(), ctimeNs: st.ctimeNs.toString(), ino: st.ino.toString() };
    const c = statCache[abs];
    if (c && c.header === header && c.size === id.size && c.mtimeNs === id.mtimeNs && c.ctimeNs === id.ctimeNs && c.ino === id.ino) return c;
    if (opts.cachedOnly) throw new NeedsHashing();
    const r = await hashFileBoth(abs, ctxRel, header, follow);
    hashedBytes += r.bytes;
    statCache[abs] = { ...id, hash: r.hash, header, sum: r.sum };
    return r;
  };
  const all: DigestEntry[][] = [];
  const sourceHashes: string[] = [];
  for (const src of sources) {
    const list: DigestEntry[] = [];
    // A source named in the Dockerfile is followed if it is a symlink (resolved by the caller).
    const st = statSync(src.abs, { bigint: true });
    const special = specialKind(st);
    if (special) throw specialFileError(src.rel, special);
    // The daemon looks a source up by its clean path: `dir/`, `./dir` and `dir/.` hash as `dir`.
    const clean = contextPath(src.rel);
    if (st.isDirectory()) {
      const sums: string[] = [];
      await walk({ isIgnored, isImplied, fileSums }, src.abs, clean, '.', list, sums);
      sourceHashes.push(hashStringSlice('dir', sums.sort()));
    } else {
      const r = await fileSums(src.abs, clean, st, true);
      list.push({ path: src.rel, type: 'file', mode: Number(st.mode) & 0o1777, hash: r.hash });
      sourceHashes.push(`file:${r.sum}`);
    }
    all.push(list);
  }
  const legacyHash = sourceHashes.length === 1 ? sourceHashes[0]! : hashStringSlice('multi', sourceHashes);
  return { entries: all, legacyHash, sourceHashes, hashedBytes };
}

interface WalkRules {
  isIgnored: (rel: string) => boolean;
  isImplied: (rel: string) => boolean;
  fileSums: (abs: string, ctxRel: string, st: BigIntStats) => Promise<{ hash: string; sum: string }>;
}

async function walk(rules: WalkRules, absDir: string, ctxRel: string, relSrc: string, out: DigestEntry[], sums: string[]): Promise<void> {
  const { isIgnored, fileSums } = rules;
  // Metadata calls are synchronous: a warm COPY of thousands of files is all stat calls, and a
  // thread-pool round trip each cost more than the calls themselves.
  const st = lstatSync(absDir, { bigint: true });
  const root = ctxRel === '.' || ctxRel === '';
  if (!root && rules.isImplied(ctxRel)) {
    // Not in the context tar: the daemon made it (0755) and its tarsum lookup falls back to the path.
    out.push({ path: relSrc, type: 'dir', mode: 0o755, implied: true });
    sums.push(ctxRel);
  } else {
    out.push({ path: relSrc, type: 'dir', mode: Number(st.mode) & 0o1777 });
    // Docker hashes the folder's own entry too (except the context root).
    if (!root) sums.push(crypto.createHash('sha256').update(tarsumHeader(ctxRel, st, '')).digest('hex'));
  }
  const names = readdirSync(absDir).sort();
  for (const name of names) {
    const rel = ctxRel === '.' || ctxRel === '' ? name : `${ctxRel}/${name}`;
    if (isIgnored(rel)) continue;
    const abs = path.join(absDir, name);
    const r = relSrc === '.' ? name : `${relSrc}/${name}`;
    const est = lstatSync(abs, { bigint: true });
    if (est.isDirectory()) {
      await walk(rules, abs, rel, r, out, sums);
    } else if (est.isSymbolicLink()) {
      const link = readlinkSync(abs);
      out.push({ path: r, type: 'symlink', mode: 0o777, link });
      sums.push(crypto.createHash('sha256').update(tarsumHeader(rel, est, link)).digest('hex'));
    } else if (est.isFile()) {
      // Named pipes, sockets and devices below a copied folder are skipped, never opened.
      const h = await fileSums(abs, rel, est);
      out.push({ path: r, type: 'file', mode: Number(est.mode) & 0o1777, hash: h.hash });
      sums.push(h.sum);
    }
  }
}
