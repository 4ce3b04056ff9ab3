import { readFileSync } from 'node:fs';
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

/** A step's writes, flushed to disk while it runs: `stop` ends it once the step has. */
export interface RunningFlush { stop(): void }

/**
 * Syncs the filesystem of a running step's layer every `everyMs` (one sync at a time), so that
 * what a long RUN writes goes to disk on a core its container leaves idle rather than all in the
 * sync after it (`syncLayer`, beside the pack), which is then left with what the last interval
 * wrote. A RUN shorter than `everyMs` is not synced twice. A failure here is not the step's: the
 * sync after it reports one. `stop` does not wait for a sync in flight: the spawner runs syncs in
 * order, on a thread that holds up nothing else, so the one after the step comes after it.
 * While the machine has less than `FLUSH_MIN_KIB` of data waiting to be written (a step that
 * sleeps, or waits on the network), nothing is synced: a sync forces a journal commit and a
 * cache flush on the disk, which a farm's many steps should not ask for ten times a second each.
 */
export function flushWhileRunning(layerDir: string, everyMs = 100): RunningFlush {
  let inFlight: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (inFlight !== undefined || unwrittenKiB() < FLUSH_MIN_KIB) return;
    inFlight = syncLayer(layerDir).catch(() => undefined).finally(() => { inFlight = undefined; });
  }, everyMs);
  return { stop: () => clearInterval(timer) };
}

/** Dirty data below which a running step's layer is not synced (see flushWhileRunning). */
export const FLUSH_MIN_KIB = 4096;

/** The machine's data waiting to be written (`Dirty` in /proc/meminfo), in KiB; unknown is much. */
export function unwrittenKiB(): number {
  try {
    const dirty = Number(/^Dirty:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'latin1'))?.[1] ?? Number.NaN);
    return Number.isFinite(dirty) ? dirty : Number.POSITIVE_INFINITY;
  } catch {
    return Number.POSITIVE_INFINITY;
  }
}
