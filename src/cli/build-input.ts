/**
 * Docker's stdin conventions for `build`: `-f -` reads the Dockerfile from stdin (the context is
 * the folder given), and a context of `-` reads stdin as either a context tar (plain, gzip,
 * bzip2 or xz; extracted with the same safe applier as an API upload) or, when it is no archive,
 * a lone Dockerfile with an empty context. Whatever is read lands in the store's scratch space
 * and is removed after the build.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform } from 'node:stream';
import { SlipwayError } from '../errors.js';
import { ensureStore, makeTmpDir } from '../store/graph.js';
import type { StoreLayout } from '../store/layout.js';

/** A context from stdin, as sent and as extracted, is at most this big (as the API's default). */
const MAX_STDIN_CONTEXT = 4 * 1024 ** 3;

/** A pass-through that fails once more than `max` bytes went through it. */
function limit(what: string): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      seen += chunk.length;
      if (seen > MAX_STDIN_CONTEXT) cb(new SlipwayError('ERR_USAGE', `${what} from stdin is larger than ${MAX_STDIN_CONTEXT} bytes`));
      else cb(null, chunk);
    },
  });
}

/** A Dockerfile from stdin is at most this big (Docker's own limit is far larger; no Dockerfile is). */
const MAX_STDIN_DOCKERFILE = 16 * 1024 * 1024;

/** What the build reads: a context folder and, optionally, a Dockerfile path (host path). */
export interface BuildInput {
  contextDir: string;
  file?: string;
  /** The context came from an archive (its folder is throwaway). */
  throwaway: boolean;
  cleanup(): Promise<void>;
}

async function readAll(input: NodeJS.ReadableStream, max: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of input as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > max) throw new SlipwayError('ERR_USAGE', `${what} from stdin is larger than ${max} bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

/** gzip, bzip2, xz, or a tar header ("ustar" at 257): what Docker's IsArchive accepts. */
export function looksLikeArchive(head: Buffer): boolean {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return true;
  if (head.subarray(0, 3).toString('latin1') === 'BZh') return true;
  if (head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return true;
  return head.length >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar';
}

/** Reads the first bytes of `input` and gives them back with a stream of the whole input. */
async function peek(input: NodeJS.ReadableStream, n: number): Promise<{ head: Buffer; stream: Readable }> {
  const it = (input as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const got: Buffer[] = [];
  let len = 0;
  let done = false;
  while (len < n) {
    const r = await it.next();
    if (r.done) { done = true; break; }
    got.push(r.value);
    len += r.value.length;
  }
  async function* all(): AsyncGenerator<Buffer> {
    yield* got;
    if (!done) for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
  }
  return { head: Buffer.concat(got), stream: Readable.from(all()) };
}

/** Resolves `build`'s context argument and `-f` against stdin. */
export async function buildInput(layout: StoreLayout, context: string, file: string | undefined, stdin: NodeJS.ReadableStream = process.stdin): Promise<BuildInput> {
  if (context !== '-' && file !== '-') return { contextDir: context, ...(file !== undefined ? { file } : {}), throwaway: false, cleanup: async () => undefined };
  if (context === '-' && file === '-') throw new SlipwayError('ERR_USAGE', "invalid argument: can't use stdin for both build context and dockerfile");
  await ensureStore(layout);
  const dir = await makeTmpDir(layout, 'stdin');
  const cleanup = () => fs.rm(dir, { recursive: true, force: true });
  try {
    if (file === '-') {
      const df = path.join(dir, 'Dockerfile');
      await fs.writeFile(df, await readAll(stdin, MAX_STDIN_DOCKERFILE, 'the Dockerfile'));
      return { contextDir: context, file: df, throwaway: false, cleanup };
    }
    const contextDir = path.join(dir, 'context');
    const { head, stream } = await peek(stdin, 512);
    if (looksLikeArchive(head)) {
      // The tar reader loads only for an archive on stdin: a build of a folder never needs it.
      const { receiveContext } = await import('../context/receive.js');
      await receiveContext(stream, contextDir, limit);
      // -f names a file inside the archive; it must not leave it.
      if (file !== undefined && path.relative(contextDir, path.resolve(contextDir, file)).startsWith('..')) {
        throw new SlipwayError('ERR_USAGE', `-f ${file}: with a context from stdin, -f names a file inside the archive`);
      }
      return { contextDir, ...(file !== undefined ? { file: path.resolve(contextDir, file) } : {}), throwaway: true, cleanup };
    }
    // Not an archive: the whole of stdin is a Dockerfile, and the context is empty.
    await fs.mkdir(contextDir, { mode: 0o755 });
    await fs.writeFile(path.join(contextDir, 'Dockerfile'), await readAll(stream, MAX_STDIN_DOCKERFILE, 'the Dockerfile'));
    return { contextDir, throwaway: true, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}
