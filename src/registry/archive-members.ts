import fs from 'node:fs/promises';
import { createReadStream, createWriteStream, type ReadStream } from 'node:fs';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { SlipwayError } from '../errors.js';

/**
 * The members of an outer archive (`docker save`, OCI layout tar), extracted into a scratch
 * folder under generated names (`m0`, `m1`, ...), never under their own names. A member is then
 * found only through this map: a name from the archive's metadata (`manifest.json`,
 * `index.json`) is checked and looked up here, so no name, however it is spelled (`..`, an
 * absolute path, a symlink), is ever resolved against the host's filesystem. Symlinks and
 * hard links between members (older `docker save` links shared layers) are followed inside the
 * map only; a link that leads out of the archive is refused when it is read.
 */
export class ArchiveMembers {
  private constructor(private readonly files: Map<string, string>, private readonly links: Map<string, string>) {}

  /** Extracts `input` into `dir` (created). A broken tar is ERR_BAD_ARCHIVE; a disk error stays what it is. */
  static async extract(input: NodeJS.ReadableStream, dir: string): Promise<ArchiveMembers> {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const files = new Map<string, string>();
    const links = new Map<string, string>();
    const extract = tarStream.extract();
    let n = 0;
    let writeError: unknown;
    const work = (async () => {
      for await (const entry of extract) {
        const h = entry.header;
        const name = entryName(h.name);
        if (name !== undefined && (h.type === 'file' || h.type === 'contiguous-file')) {
          const host = path.join(dir, `m${n++}`);
          try {
            await pipeline(entry, createWriteStream(host, { mode: 0o600 }));
          } catch (e) {
            writeError ??= e;
            throw e;
          }
          files.set(name, host);
          links.delete(name);
          continue;
        }
        if (name !== undefined && (h.type === 'symlink' || h.type === 'link') && h.linkname) {
          // A symlink's target is relative to its folder, a hard link's to the archive's root.
          const base = h.type === 'symlink' ? path.posix.dirname(name) : '';
          links.set(name, h.linkname.startsWith('/') ? `/${h.linkname}` : path.posix.normalize(path.posix.join(base, h.linkname)));
          files.delete(name);
        }
        entry.resume();
      }
    })();
    const [fed, read] = await Promise.allSettled([pipeline(input as Readable, extract), work]);
    if (writeError !== undefined) throw writeError; // ENOSPC and the like: the disk, not the archive
    if (read.status === 'rejected' && read.reason instanceof SlipwayError) throw read.reason;
    const failed = fed.status === 'rejected' ? fed.reason : read.status === 'rejected' ? read.reason : undefined;
    if (failed !== undefined) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid archive: cannot read tar: ${(failed as Error).message}`);
    return new ArchiveMembers(files, links);
  }

  /** True when `name` is a regular member (through links inside the archive). */
  has(name: string): boolean {
    try {
      this.file(name, 'member');
      return true;
    } catch {
      return false;
    }
  }

  /**
   * The host file holding member `name`, where `name` comes from the archive's own metadata and
   * `what` says which (for the message): a `..` component, an absolute path, a link leading out
   * of the archive or a missing member is "… is not in the archive".
   */
  file(name: unknown, what: string): string {
    if (typeof name !== 'string' || name === '' || name.includes('\0')) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid archive: ${what} is not a file name: ${JSON.stringify(name) ?? String(name)}`);
    const notIn = () => new SlipwayError('ERR_BAD_ARCHIVE', `invalid archive: ${what} ${JSON.stringify(name)} is not in the archive`);
    let parts = splitName(name);
    if (parts === undefined) throw notIn();
    let hops = 0;
    for (let i = 0; i < parts.length; i++) {
      const target = this.links.get(parts.slice(0, i + 1).join('/'));
      if (target === undefined) continue;
      if (++hops > 40) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid archive: ${what} ${JSON.stringify(name)}: too many levels of symbolic links`);
      const through = splitName(target);
      if (through === undefined) throw notIn(); // a link out of the archive (`..`, absolute)
      parts = [...through, ...parts.slice(i + 1)];
      i = -1;
    }
    const host = this.files.get(parts.join('/'));
    if (host === undefined) throw notIn();
    return host;
  }

  /** A member's bytes, at most `cap` of them. */
  async bytes(name: unknown, what: string, cap: number): Promise<Buffer> {
    const file = this.file(name, what);
    const { size } = await fs.stat(file);
    if (size > cap) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid archive: ${what} ${JSON.stringify(name)} is too large (${size} bytes)`);
    return fs.readFile(file);
  }

  /** A member's bytes parsed as JSON (with the same checks as `bytes`). */
  async json(name: unknown, what: string, cap: number): Promise<unknown> {
    return parseArchiveJson(await this.bytes(name, what, cap), `${what} ${JSON.stringify(name)}`);
  }

  /** A stream of a member's bytes. */
  stream(name: unknown, what: string): ReadStream {
    return createReadStream(this.file(name, what));
  }
}

/** An entry's name made relative and clean; undefined for the archive's root itself. */
function entryName(raw: string): string | undefined {
  const parts = splitName(raw.replace(/^\/+/, ''));
  if (parts === undefined) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid archive entry: ${JSON.stringify(raw)} is not in the archive`);
  return parts.length ? parts.join('/') : undefined;
}

/** `a/./b//c` -> [a, b, c]; undefined when the name is absolute or has a `..` component. */
function splitName(name: string): string[] | undefined {
  if (name.startsWith('/')) return undefined;
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  return parts.includes('..') ? undefined : parts;
}

/** Deepest nesting accepted in an archive's JSON (real documents nest 4 or 5 deep). */
export const MAX_JSON_DEPTH = 64;

/**
 * JSON from an untrusted archive: a syntax error or absurd nesting (which would overflow the
 * stack of every recursive walk after it) is a bad archive, never a crash.
 */
export function parseArchiveJson(bytes: Buffer | string, what: string): unknown {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString());
  } catch (e) {
    throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid archive: ${what} is not JSON: ${(e as Error).message}`);
  }
  if (nestsDeeperThan(doc, MAX_JSON_DEPTH)) throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid archive: ${what} nests more than ${MAX_JSON_DEPTH} deep`);
  return doc;
}

/** True when a parsed JSON value nests deeper than `max` (walked without recursion). */
export function nestsDeeperThan(doc: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[doc, 0]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth >= max) return true;
    for (const c of Object.values(v)) stack.push([c, depth + 1]);
  }
  return false;
}
