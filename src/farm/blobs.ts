import fs from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import crypto from 'node:crypto';
import { RegistryClient, type Credentials } from '../registry/client.js';


/** sha256 and size of a file, streamed. */
export async function fileDigest(file: string): Promise<{ digest: string; size: number }> {
  const h = crypto.createHash('sha256');
  let size = 0;
  for await (const c of createReadStream(file)) {
    h.update(c as Buffer);
    size += (c as Buffer).length;
  }
  return { digest: `sha256:${h.digest('hex')}`, size };
}

/**
 * Content-addressed blobs in the farm's registry: what every worker can reach without a
 * shared filesystem. A blob already there is not sent again (HEAD first).
 */
export class BlobStore {
  readonly client: RegistryClient;

  constructor(readonly registry: string, credentials?: Credentials) {
    // The farm's registry is the user's own; plain HTTP is allowed for it (loopback or named insecure).
    this.client = new RegistryClient({ registry, insecureRegistries: [registry], credentials });
  }

  async put(repo: string, file: string): Promise<{ digest: string; size: number; uploaded: boolean }> {
    const { digest, size } = await fileDigest(file);
    if ((await this.client.headBlob(repo, digest)) !== undefined) return { digest, size, uploaded: false };
    await this.client.uploadBlob(repo, { file, size, digest }, { chunkSize: 64 * 1024 * 1024 });
    return { digest, size, uploaded: true };
  }

  /** Downloads a blob to `file`, verifying its digest and size. */
  async get(repo: string, digest: string, size: number, file: string): Promise<void> {
    await fs.rm(file, { force: true });
    await this.client.downloadBlob(repo, { mediaType: 'application/octet-stream', digest, size }, file);
  }
}
