import crypto from 'node:crypto';
import { createReadStream } from 'node:fs';
import { dockerfileError } from '../errors.js';

/**
 * ADD --checksum: the downloaded file must have the digest given. A mismatch fails the step
 * with BuildKit's words, `digest mismatch <got>: <wanted>`, and names both digests again in
 * plain words. The file is hashed where it lies (in the build's scratch space): nothing of it
 * has reached a layer yet.
 */
export async function verifyChecksum(abs: string, expected: string, url: string, file: string, line: number): Promise<void> {
  const [algo] = expected.split(':');
  const h = crypto.createHash(algo!);
  for await (const chunk of createReadStream(abs)) h.update(chunk as Buffer);
  const got = `${algo}:${h.digest('hex')}`;
  if (got === expected) return;
  throw dockerfileError('ERR_FILE_NOT_FOUND', file, line, `ADD failed: digest mismatch ${got}: ${expected} (${url} has ${got}; --checksum wants ${expected})`);
}
