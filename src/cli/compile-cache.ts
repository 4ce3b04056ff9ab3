/**
 * Node's module compile cache (`module.enableCompileCache`, Node ≥ 22.1): V8's code for every
 * module the CLI loads, kept on disk between runs. A no-op on Node 20, which has no such API.
 *
 * Where: `SLIPWAY_COMPILE_CACHE`, else `.compile-cache` beside the installed `dist/` (the
 * folder the CLI's own code lives in). Never a shared temp folder: slipway runs as root, and
 * code cache written by another user would be code root runs. Node's own
 * NODE_COMPILE_CACHE (set before start) wins; NODE_DISABLE_COMPILE_CACHE=1 or
 * SLIPWAY_COMPILE_CACHE=off turns it off.
 */
import module from 'node:module';
import { fileURLToPath } from 'node:url';

/** The cache folder this installation uses by default: `dist/.compile-cache`. */
export const DEFAULT_COMPILE_CACHE = fileURLToPath(new URL('../../.compile-cache', import.meta.url));

type Enable = (dir?: string) => { status: number; message?: string; directory?: string };

/**
 * Turns the cache on for this process. Returns the folder
 * in use, or undefined when this Node has no compile cache or it is turned off. Never throws:
 * a cache that cannot be written only costs the time it would have saved.
 */
export function enableCompileCache(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const enable = (module as unknown as { enableCompileCache?: Enable }).enableCompileCache;
  const asked = env['SLIPWAY_COMPILE_CACHE'];
  if (enable === undefined || asked === 'off' || env['NODE_DISABLE_COMPILE_CACHE']) return undefined;
  try {
    const r = enable(asked || DEFAULT_COMPILE_CACHE);
    return r.directory;
  } catch {
    return undefined;
  }
}
