import { resolve as resolveHost } from 'node:path';
import { syncfsViaSpawner } from '../sandbox/spawner.js';

/**
 * Writes the filesystem holding a step's new layer to disk (syncfs), so that a layer is on disk
 * before it is registered. A step's overlay is mounted `volatile`: its unmount no longer syncs
 * the upper filesystem as the step's container exits (about 0.1 s for a 10,000-file RUN, more
 * while another step's data is dirty), and this runs beside the layer's pack instead. Done by
 * this thread's spawner (`native/spawner.c`), which dies with it: starting a process for it
 * cost a small layer more than its sync.
 */
export function syncLayer(layerDir: string): Promise<void> {
  return syncfsViaSpawner(resolveHost(layerDir));
}
