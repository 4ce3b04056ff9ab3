/** Test helper: tar archives crafted in memory (hostile ones included) for the layer and ADD tests. */
import { Readable } from 'node:stream';
import { extract, pack, type Header } from 'tar-stream';

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

/** Every member of a tar held in memory: its name (as written) and body. */
export async function readTarEntries(buf: Buffer): Promise<Array<{ name: string; type: string; body: Buffer }>> {
  const out: Array<{ name: string; type: string; body: Buffer }> = [];
  const ex = extract();
  Readable.from([buf]).pipe(ex as unknown as NodeJS.WritableStream);
  for await (const entry of ex) {
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    out.push({ name: entry.header.name, type: entry.header.type ?? 'file', body: Buffer.concat(chunks) });
  }
  return out;
}
