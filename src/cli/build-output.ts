/**
 * `build --output`: the final image's filesystem exported beside the image, as buildx's local
 * and tar exporters write it. The layers are merged with the vfs driver's overlay semantics
 * (whiteouts and opaque folders applied), into a folder next to the destination that is renamed
 * into place at the end, or packed into a tar written to a temporary name and renamed: a failed
 * build or export leaves no half-written output.
 */
import fs from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { SlipwayError } from '../errors.js';
import { lowerDirsOf } from '../store/graph.js';
import { assembleRootfs } from '../snapshot/vfs-assemble.js';
import { packLayer } from '../snapshot/pack.js';
import { makeTmpDir } from '../store/graph.js';
import type { ImageId, StoreLayout } from '../store/layout.js';
import type { BuildOutput } from './build-flags.js';

/** Checked before the build: a folder must be absent or empty; a tar's folder must exist. */
export async function checkOutputs(outputs: readonly BuildOutput[]): Promise<void> {
  for (const o of outputs) {
    const st = await fs.lstat(o.dest).catch(() => undefined);
    if (o.type === 'local') {
      if (st && !st.isDirectory()) throw new SlipwayError('ERR_USAGE', `--output type=local,dest=${o.dest}: not a folder`);
      if (st && (await fs.readdir(o.dest)).length > 0) throw new SlipwayError('ERR_USAGE', `--output type=local,dest=${o.dest}: the folder is not empty`);
    } else {
      if (st?.isDirectory()) throw new SlipwayError('ERR_USAGE', `--output type=tar,dest=${o.dest}: is a folder`);
      const dir = await fs.stat(path.dirname(o.dest)).catch(() => undefined);
      if (!dir?.isDirectory()) throw new SlipwayError('ERR_USAGE', `--output type=tar,dest=${o.dest}: no such folder ${path.dirname(o.dest)}`);
    }
  }
}

async function exportLocal(lowerDirs: string[], dest: string): Promise<void> {
  const tmp = `${dest}.slipway-${process.pid}`;
  try {
    await assembleRootfs(lowerDirs, tmp);
    await fs.rmdir(dest).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT') throw e; });
    await fs.rename(tmp, dest);
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

async function exportTar(layout: StoreLayout, lowerDirs: string[], dest: string): Promise<void> {
  const work = await makeTmpDir(layout, 'output');
  const tmp = `${dest}.slipway-${process.pid}`;
  try {
    const root = path.join(work, 'root');
    await assembleRootfs(lowerDirs, root);
    await packLayer(root, createWriteStream(tmp, { mode: 0o644 }));
    await fs.rename(tmp, dest);
  } finally {
    await fs.rm(tmp, { force: true });
    await fs.rm(work, { recursive: true, force: true });
  }
}

/** Writes every output of image `id`. */
export async function writeOutputs(layout: StoreLayout, id: ImageId, outputs: readonly BuildOutput[]): Promise<void> {
  if (outputs.length === 0) return;
  const lowerDirs = await lowerDirsOf(layout, id);
  for (const o of outputs) {
    if (o.type === 'local') await exportLocal(lowerDirs, o.dest);
    else await exportTar(layout, lowerDirs, o.dest);
  }
}
