import fs from 'node:fs/promises';
import path from 'node:path';
import { SlipwayError } from '../errors.js';
import type { ImageId, StoreLayout } from '../store/layout.js';
import { discardImage, ensureStore, makeTmpDir } from '../store/graph.js';
import { updateRepositories } from '../store/repositories.js';
import { formatReference } from '../store/reference.js';
import { ArchiveMembers } from './archive-members.js';
import { decompressStream } from '../snapshot/tar-read.js';
import { registerChain } from './chain.js';
import { MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES } from './manifest.js';
import { CHAIN_FIELD } from './saved-chain.js';
import { prepareOciLayout } from './oci-layout.js';
import { parseTags, planItem, unpackMissing, type PreparedImage, type UnpackedLayers } from './load-prepare.js';

/**
 * `load`: reads a `docker save` archive (or, without `manifest.json`, an OCI image layout).
 * Every member is read from inside the archive only (see ArchiveMembers); every image is
 * checked and its missing layers unpacked with the safe applier and verified against the
 * config's diff ids before the first image is registered. Then the chains are registered and
 * tagged; if that fails (a full disk), the images this load added are taken away again. So a
 * load adds everything or nothing. Images keep the ids they had where they were saved (see
 * saved-chain.ts); an archive from elsewhere gets ids derived from its content.
 */
export async function loadImages(layout: StoreLayout, input: NodeJS.ReadableStream): Promise<Array<{ id: ImageId; tags: string[] }>> {
  await ensureStore(layout);
  const tmp = await makeTmpDir(layout, 'load');
  try {
    // A compressed archive (docker save | gzip) loads as docker load reads it.
    const { stream } = await decompressStream(input);
    const members = await ArchiveMembers.extract(stream, path.join(tmp, 'x'));
    const unpacked: UnpackedLayers = new Map();
    const items = !members.has('manifest.json') && members.has('oci-layout')
      ? await prepareOciLayout(layout, members, { tmp, unpacked })
      : await prepareDockerSave(layout, members, { tmp, unpacked });
    // Docker loads such an archive silently; a load that loads nothing is more likely a mistake.
    if (items.length === 0) throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid archive: it holds no image (its manifest.json or index.json lists none)');
    return await commitImages(layout, items);
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

/** One `manifest.json` item, as far as it has been checked. */
interface ManifestItem { Config: unknown; RepoTags?: unknown; Layers?: unknown; [CHAIN_FIELD]?: unknown }

async function readManifest(members: ArchiveMembers): Promise<ManifestItem[]> {
  if (!members.has('manifest.json')) {
    throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid archive: no manifest.json or oci-layout (neither the docker save format nor an OCI image layout)');
  }
  const manifest = await members.json('manifest.json', 'manifest.json', MAX_MANIFEST_BYTES);
  if (!Array.isArray(manifest) || !manifest.every((m) => m !== null && typeof m === 'object' && !Array.isArray(m))) {
    throw new SlipwayError('ERR_BAD_ARCHIVE', 'invalid archive: manifest.json is not a list of images');
  }
  return manifest as ManifestItem[];
}

async function prepareDockerSave(layout: StoreLayout, members: ArchiveMembers, ctx: { tmp: string; unpacked: UnpackedLayers }): Promise<PreparedImage[]> {
  const items: PreparedImage[] = [];
  for (const m of await readManifest(members)) {
    const configBytes = await members.bytes(m.Config, 'config', MAX_CONFIG_BYTES);
    const what = `config ${JSON.stringify(m.Config)}`;
    const saved = m[CHAIN_FIELD] === undefined ? undefined : await members.json(m[CHAIN_FIELD], CHAIN_FIELD, MAX_CONFIG_BYTES);
    const { doc, plan } = await planItem(layout, configBytes, what, saved);
    const names = m.Layers;
    if (!Array.isArray(names) || names.length !== doc.rootfs.diff_ids.length) {
      throw new SlipwayError('ERR_BAD_ARCHIVE', `invalid archive: ${what} names ${doc.rootfs.diff_ids.length} layers, manifest.json ${Array.isArray(names) ? names.length : 0}`);
    }
    // Every layer name is checked, also those of layers the store already has (as Docker does).
    for (const n of names) members.file(n, 'layer');
    const tags = parseTags(m.RepoTags, 'manifest.json');
    const layers = await unpackMissing(layout, plan, ctx, (i) => members.stream(names[i], 'layer'), (i) => JSON.stringify(names[i]));
    items.push({ doc, plan, configBytes, layers, tags });
  }
  return items;
}

/**
 * Registers every prepared image and sets the tags; on any failure takes away the images it
 * added, so the store is as it was.
 */
export async function commitImages(layout: StoreLayout, items: readonly PreparedImage[]): Promise<Array<{ id: ImageId; tags: string[] }>> {
  const added: ImageId[] = [];
  const results: Array<{ id: ImageId; tags: string[] }> = [];
  try {
    for (const it of items) {
      const r = await registerChain(layout, it.doc, it.plan, { layers: it.layers, configBytes: it.configBytes });
      added.push(...r.added);
      results.push({ id: r.top, tags: it.tags.map(formatReference) });
    }
    const tagged = items.flatMap((it, i) => it.tags.map((t) => [t, results[i]!.id] as const));
    if (tagged.length) await updateRepositories(layout, (r) => { for (const [t, id] of tagged) (r.Repositories[t.repository] ??= {})[t.tag] = id; });
  } catch (e) {
    for (const id of added.reverse()) await discardImage(layout, id).catch(() => undefined);
    throw e;
  }
  return results;
}
