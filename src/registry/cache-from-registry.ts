/**
 * `--cache-from` sources: a local image, or a registry reference the store lacks, read lazily
 * (manifest and config now, a layer only when a step hits it). A source that cannot be found or
 * read is skipped with a warning, as dockerd skips it.
 */
import path from 'node:path';
import type { StoreLayout } from '../store/layout.js';
import { RegistryClient, type Credentials } from './client.js';
import { checkConfigDoc } from './chain.js';
import { MAX_CONFIG_BYTES, layerCompression } from './manifest.js';
import { resolveManifest } from './pull.js';
import { DEFAULT_INDEX, parseRemoteReference } from './remote-reference.js';
import { localSourceIfAny, unpackBlob, type CacheSource } from './cache-from.js';

/** How to reach registries for `--cache-from`. */
export interface CacheFromAccess {
  insecureRegistries?: readonly string[];
  credentials?: (registry: string) => Promise<Credentials | undefined>;
}

/** A registry image as a source: its config now; each layer is downloaded when a step needs it. */
export async function registrySource(ref: string, access: CacheFromAccess): Promise<CacheSource> {
  const remote = parseRemoteReference(ref);
  const client = new RegistryClient({
    registry: remote.registry, credentials: remote.root ? undefined : await access.credentials?.(remote.registry), scopes: [`repository:${remote.path}:pull`],
    ...(access.insecureRegistries ? { insecureRegistries: access.insecureRegistries } : {}),
  });
  const { manifest } = await resolveManifest(client, remote, undefined);
  const doc = checkConfigDoc(JSON.parse((await client.getBlobBytes(remote.path, manifest.config, MAX_CONFIG_BYTES)).toString('utf8')) as unknown);
  const diffIds = doc.rootfs.diff_ids;
  const history = (doc.history ?? []).map((h) => ({ createdBy: h.created_by ?? '', empty: h.empty_layer === true, ...(h.created ? { created: h.created } : {}) }));
  // A history that does not account for every layer cannot be matched step by step.
  const usable = manifest.layers.length === diffIds.length && history.filter((h) => !h.empty).length === diffIds.length;
  return {
    name: ref,
    history: usable ? history : [],
    diffIds: usable ? diffIds : [],
    async layer(k, dir) {
      const desc = manifest.layers[k]!;
      layerCompression(desc.mediaType);
      const blob = path.join(path.dirname(dir), 'layer.blob');
      await client.downloadBlob(remote.path, desc, blob);
      return unpackBlob(blob, dir, diffIds[k]!, `--cache-from ${ref}: layer ${desc.digest}`);
    },
  };
}

/** Every `--cache-from` name as a source; `warn` hears about the ones skipped. */
export async function loadCacheSources(layout: StoreLayout, names: readonly string[], access: CacheFromAccess, warn: (text: string) => void): Promise<CacheSource[]> {
  const out: CacheSource[] = [];
  for (const name of names) {
    try {
      const local = await localSourceIfAny(layout, name);
      if (local) out.push(local);
      else if (parseRemoteReference(name).registry !== DEFAULT_INDEX) out.push(await registrySource(name, access));
      else warn(`--cache-from ${name}: no such image in this store (Docker Hub is never contacted); skipped`);
    } catch (e) {
      warn(`--cache-from ${name}: ${(e as Error).message.split('\n')[0]}; skipped`);
    }
  }
  return out;
}
