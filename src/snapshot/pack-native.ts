import { resolve as resolveHost } from 'node:path';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { SlipwayError } from '../errors.js';
import { spawnViaSpawner } from '../sandbox/spawner.js';
import type { IdMapping } from '../sandbox/userns.js';
import { notePack, type PackResult } from './pack.js';

const PACKER = fileURLToPath(new URL('../../native/slipway-pack', import.meta.url));
/** slipway-pack's exit status for a layer that needs a PAX header, which it does not write. */
const NEEDS_JS = 3;

/**
 * A step's layer packed by `native/pack.c`, which writes what `packLayer` writes, byte for byte
 * (a test compares them), without a JavaScript call per file: the tar to `tarFile` (else only the
 * digest and sizes), owners mapped back on disk with `ownersBack`. Started through this thread's
 * spawner. Undefined when the layer needs a header it does not write (a PAX record: names that
 * are not ASCII or too long, large ids, mtimes out of ustar's range): pack it with `packLayer`.
 */
export async function packLayerNative(layerDir: string, tarFile: string | undefined, ownersBack: IdMapping | undefined): Promise<PackResult | undefined> {
  if (!existsSync(PACKER)) throw new SlipwayError('ERR_INTERNAL', `${PACKER} is missing: run "npm run build" (it compiles native/pack.c; needs the Debian package libssl-dev)`);
  const root = resolveHost(layerDir);
  const argv = [PACKER, root];
  if (ownersBack) argv.push('--owners-back', `${ownersBack.uid.host}:${ownersBack.uid.count}:${ownersBack.gid.host}:${ownersBack.gid.count}`);
  if (tarFile !== undefined) argv.push('--tar', resolveHost(tarFile));
  let out = '';
  let err = '';
  const proc = await spawnViaSpawner(argv, { onStdout: (b) => { out += b.toString(); }, onStderr: (b) => { err = (err + b.toString()).slice(-2000); } });
  const code = await proc.exited;
  if (code === NEEDS_JS) return undefined;
  if (code !== 0) throw new SlipwayError('ERR_INTERNAL', `packing ${root} failed: ${err.trim() || `exit status ${code}`}`);
  notePack(root);
  const r = JSON.parse(out) as PackResult;
  return { diffId: r.diffId, size: r.size, layerSize: r.layerSize };
}
