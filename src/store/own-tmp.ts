import fs from 'node:fs/promises';
import path from 'node:path';
import type { StoreLayout } from './layout.js';

/**
 * Removes this process's own scratch folders from `graph/_tmp/` (what a failed command left
 * behind), at the end of a one-shot command. A folder with something still mounted below it
 * is left alone: removing through a mount would reach into what is mounted.
 */
export async function sweepOwnTmp(layout: StoreLayout): Promise<void> {
  let names: string[];
  try {
    names = await fs.readdir(layout.tmp);
  } catch {
    return;
  }
  const mine = names.filter((n) => n.startsWith(`${process.pid}-`));
  if (mine.length === 0) return;
  const mounts = await fs.readFile('/proc/self/mountinfo', 'utf8').then((t) => t.split('\n').map((l) => l.split(' ')[4] ?? ''), () => [] as string[]);
  for (const name of mine) {
    const dir = path.join(layout.tmp, name);
    if (mounts.some((m) => m === dir || m.startsWith(`${dir}/`))) continue;
    await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}
