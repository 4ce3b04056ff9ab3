import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { chmod, lchown, lutimes, open, symlink } from 'node:fs/promises';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract, type Header } from 'tar-stream';
import { SlipwayError } from '../errors.js';
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

export const WH = '.wh.';
export const WH_META = '.wh..wh.';
export const WH_OPAQUE = '.wh..wh..opq';

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
