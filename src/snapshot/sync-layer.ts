import { resolve as resolveHost } from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SlipwayError } from '../errors.js';
import { spawnViaSpawner } from '../sandbox/spawner.js';

const SYNCFS = fileURLToPath(new URL('../../native/slipway-syncfs', import.meta.url));

/**
 * Writes the filesystem holding a step's new layer to disk (syncfs), so that a layer is on disk
 * before it is registered. A step's overlay is mounted `volatile`: its unmount no longer syncs
 * the upper filesystem as the step's container exits (about 0.1 s for a 10,000-file RUN, more
 * while another step's data is dirty), and this runs beside the layer's pack instead. Started
 * through this thread's spawner (`native/syncfs.c`), and dies with it.
 */
export async function syncLayer(layerDir: string): Promise<void> {
  if (!existsSync(SYNCFS)) throw new SlipwayError('ERR_INTERNAL', `${SYNCFS} is missing: run "npm run build"`);
  let err = '';
  const proc = await spawnViaSpawner([SYNCFS, resolveHost(layerDir)], { onStderr: (b) => { err = (err + b.toString()).slice(-2000); } });
  const code = await proc.exited;
  if (code !== 0) throw new SlipwayError('ERR_INTERNAL', err.trim() || `slipway-syncfs ${layerDir}: exit status ${code}`);
}
