import type { ImageJson } from '../image-config.js';
import type { ImageId } from '../store/layout.js';

/**
 * A cache shared beyond this machine (the farm's Redis index + registry). The scheduler only
 * sees this interface; `src/farm/` implements it. Keys are the step's preimage text: the
 * implementation hashes it with sha256 (xxh64 is not collision-resistant across tenants).
 */
export interface RemoteCache {
  /** What a hit is called in the output: the farm's cache (default), or `--cache-from` images. */
  readonly source?: 'remote' | 'cache-from';
  /** A step built elsewhere: registers its layer locally (same image id) and returns it. */
  fetch(preimage: string, parent: ImageId | null, key: string): Promise<{ id: ImageId; durationMs: number } | undefined>;
  /**
   * Takes the build lease of a step so that two workers never build it at once. Resolves to
   * `{ built }` when another worker finished it meanwhile (fetch it again), or to a lease to
   * release after publishing.
   */
  lease(preimage: string): Promise<{ release(): Promise<void> } | { built: true }>;
  /** Publishes a step this worker built: its layer to the registry, its record to the index. */
  publish(preimage: string, image: { id: ImageId; json: ImageJson; diffId: string; size: number; durationMs: number; layerDir: string }): Promise<void>;
}
