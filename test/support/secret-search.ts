/** Test helper: where a secret's bytes appear (plain, or inside gzip streams) in files and folders. */
import fs from 'node:fs/promises';
import path from 'node:path';
import zlib from 'node:zlib';

/** The bytes of `data` and, when it is gzip, of its decompressed content. */
function views(data: Buffer): Buffer[] {
  if (data[0] === 0x1f && data[1] === 0x8b) {
    try {
      return [data, zlib.gunzipSync(data)];
    } catch {
      return [data];
    }
  }
  return [data];
}

/** Every regular file below `root` (or `root` itself) whose content holds `needle`. */
export async function filesHolding(root: string, needle: Buffer): Promise<string[]> {
  const found: string[] = [];
  const visit = async (p: string): Promise<void> => {
    const st = await fs.lstat(p).catch(() => undefined);
    if (!st) return;
    if (st.isDirectory()) {
      for (const n of await fs.readdir(p)) await visit(path.join(p, n));
    } else if (st.isFile()) {
      if (views(await fs.readFile(p)).some((b) => b.includes(needle))) found.push(p);
    }
  };
  await visit(root);
  return found;
}

/** Members of a tar archive (docker save output) that hold `needle`, gzip members opened. */
export async function tarMembersHolding(tar: Buffer, needle: Buffer): Promise<string[]> {
  const found: string[] = [];
  let off = 0;
  while (off + 512 <= tar.length) {
    const header = tar.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const name = header.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    const size = Number.parseInt(header.subarray(124, 136).toString('utf8').replace(/\0.*$/s, '').trim() || '0', 8);
    const body = tar.subarray(off + 512, off + 512 + size);
    if (views(body).some((b) => b.includes(needle))) found.push(name);
    // A layer is itself a tar: look inside it too (its members' names tell where).
    if (body.length > 512 && name.endsWith('.tar')) found.push(...(await tarMembersHolding(body, needle)).map((n) => `${name}:${n}`));
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return found;
}
