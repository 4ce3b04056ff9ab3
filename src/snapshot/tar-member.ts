import { createReadStream } from 'node:fs';
import tarStream from 'tar-stream';
import { decompressStream } from './tar-read.js';

/**
 * The text of one regular file in a tar (plain or compressed), at most `cap` bytes; undefined
 * when the tar has no such member or it is larger. Reads the tar once, keeps nothing else.
 */
export async function readTarMember(file: string, name: string, cap = 1 << 20): Promise<string | undefined> {
  const want = name.replace(/^(\.\/)+/, '');
  const { stream } = await decompressStream(createReadStream(file));
  const extract = tarStream.extract();
  return new Promise<string | undefined>((resolve, reject) => {
    let found: string | undefined;
    extract.on('entry', (header, body, next) => {
      const entry = header.name.replace(/^(\.\/)+/, '');
      if (entry !== want || header.type !== 'file' || (header.size ?? 0) > cap) {
        body.on('end', next);
        body.resume();
        return;
      }
      const chunks: Buffer[] = [];
      body.on('data', (c: unknown) => chunks.push(c as Buffer));
      body.on('end', () => {
        found = Buffer.concat(chunks).toString('utf8');
        next();
      });
    });
    extract.on('finish', () => resolve(found));
    extract.on('error', reject);
    stream.on('error', reject);
    stream.pipe(extract);
  });
}
