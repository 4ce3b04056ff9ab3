import fs from 'node:fs/promises';
import crypto from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { applyTarToRoot } from '../snapshot/apply.js';
import { decompressStream } from '../snapshot/tar-read.js';

/**
 * Receives a build context tar (plain, gzip, bzip2 or xz, as `docker build --compress` may
 * send) into a new folder `contextDir`, with the same safe applier a layer or ADD uses: entry
 * names cannot leave the folder, symlinks are never followed out of it. `limit(what)` gives a
 * pass-through that bounds the bytes sent and the bytes extracted (a gzip bomb stops there
 * too). Returns the sha256 of the bytes as sent. Used for the API's upload and the farm's blob.
 */
export async function receiveContext(body: Readable, contextDir: string, limit?: (what: string) => Transform): Promise<string> {
  await fs.mkdir(contextDir, { mode: 0o755 });
  const pass = (): Transform => new Transform({ transform(chunk: Buffer, _e, cb) { cb(null, chunk); } });
  const sent = limit?.('build context') ?? pass();
  const extracted = limit?.('extracted build context') ?? pass();
  const hash = crypto.createHash('sha256');
  const hashing = new Transform({ transform(chunk: Buffer, _e, cb) { hash.update(chunk); cb(null, chunk); } });
  const fed = pipeline(body, hashing, sent);
  fed.catch(() => undefined);
  const { stream } = await decompressStream(sent);
  const unpacked = pipeline(stream as NodeJS.ReadableStream & AsyncIterable<Buffer>, completeTar(), extracted);
  unpacked.catch(() => undefined);
  await applyTarToRoot(extracted, contextDir, '/');
  await Promise.all([fed, unpacked]);
  return hash.digest('hex');
}

/**
 * Restores the padding and end-of-archive blocks a tar may lack. docker CLI 28 sends a context
 * that ends right after the last entry's data when `-f` names a Dockerfile outside the context
 * (it appends that file unpadded); Go's tar reader, and so dockerd, accepts that. Zero blocks
 * after a complete archive are ignored by the reader.
 */
function completeTar(): Transform {
  let n = 0;
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      n += chunk.length;
      cb(null, chunk);
    },
    flush(cb) {
      cb(null, Buffer.alloc(((512 - (n % 512)) % 512) + 1024));
    },
  });
}
