/** Test helper: tar archives crafted in memory (hostile ones included) for the layer and ADD tests. */
import { pack, type Header } from 'tar-stream';

export type Spec = Partial<Header> & { name: string; body?: string | Buffer };

/** Builds a tar in memory; every field is explicit so tar-stream fills in nothing. */
export async function makeTar(entries: Spec[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of p) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    const { body, ...h } = e;
    const header = { mode: 0o100644, mtime: new Date(1_000_000_000_000), uid: 0, gid: 0, type: 'file' as const, ...h };
    await new Promise<void>((res, rej) => {
      const cb = (err?: Error | null): void => (err ? rej(err) : res());
      // a 'file' sink waits for a body, even an empty one
      if (body !== undefined || header.type === 'file') p.entry(header, body ?? '', cb);
      else p.entry(header, cb);
    });
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}
