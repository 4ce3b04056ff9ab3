import type { ContainerConfigJson, ImageJson } from '../image-config.js';
import { StoreLayout, type ImageId } from './layout.js';
import { childrenIndex, imageChain, listImageIds, readDiffId, readImage, readLayerSize } from './graph.js';
import { listTags, readRepositories } from './repositories.js';

/** One row of `images`. */
export interface ImageRow { repository: string; tag: string; id: ImageId; created: string; size: number; virtualSize: number }

/** The total size of an image's chain (Docker's virtual size). */
export async function virtualSize(layout: StoreLayout, id: ImageId): Promise<number> {
  let total = 0;
  for (const c of await imageChain(layout, id)) total += await readLayerSize(layout, c.id);
  return total;
}

/**
 * `images`: one row per tag, newest first; with `all`, every untagged image too, otherwise only
 * untagged images no other image builds on (dangling), as Docker lists them.
 */
export async function listImages(layout: StoreLayout, all = false): Promise<ImageRow[]> {
  const tags = listTags(await readRepositories(layout));
  const rows: ImageRow[] = [];
  const tagged = new Set<string>();
  for (const t of tags) {
    const json = await readImage(layout, t.id).catch(() => undefined);
    if (!json) continue;
    tagged.add(t.id);
    rows.push({ repository: t.repository, tag: t.tag, id: t.id, created: json.created, size: await readLayerSize(layout, t.id), virtualSize: await virtualSize(layout, t.id) });
  }
  const children = all ? new Map<string, ImageId[]>() : await childrenIndex(layout);
  for (const id of await listImageIds(layout)) {
    if (tagged.has(id)) continue;
    if (!all && (children.get(id)?.length ?? 0) > 0) continue;
    const json = await readImage(layout, id).catch(() => undefined);
    if (!json) continue;
    rows.push({ repository: '<none>', tag: '<none>', id, created: json.created, size: await readLayerSize(layout, id), virtualSize: await virtualSize(layout, id) });
  }
  rows.sort((a, b) => b.created.localeCompare(a.created) || a.repository.localeCompare(b.repository) || a.tag.localeCompare(b.tag));
  return rows;
}

/** The history string of one image: its container_config Cmd joined by spaces, as Docker records it. */
export function createdBy(json: ImageJson): string {
  return (json.container_config?.Cmd ?? []).join(' ');
}

/** One `history` row, newest first. */
export interface HistoryRow { id: ImageId; created: string; createdBy: string; size: number; comment: string; emptyLayer: boolean; tags: string[] }

export async function imageHistory(layout: StoreLayout, id: ImageId): Promise<HistoryRow[]> {
  const tags = listTags(await readRepositories(layout));
  const rows: HistoryRow[] = [];
  for (const c of await imageChain(layout, id)) {
    rows.push({
      id: c.id, created: c.json.created, createdBy: createdBy(c.json), size: await readLayerSize(layout, c.id),
      comment: c.json.comment ?? '', emptyLayer: c.json.throwaway === true,
      tags: tags.filter((t) => t.id === c.id).map((t) => `${t.repository}:${t.tag}`),
    });
  }
  return rows;
}

/** An image's diff ids, base first, skipping empty layers. */
export async function diffIds(layout: StoreLayout, id: ImageId): Promise<string[]> {
  const chain = (await imageChain(layout, id)).reverse();
  const out: string[] = [];
  for (const c of chain) if (!c.json.throwaway) out.push(await readDiffId(layout, c.id));
  return out;
}

/** The image config document (`docker save`'s `<digest>.json`, a registry's config blob). */
export interface ImageConfigDocJson {
  architecture: string;
  config: ContainerConfigJson;
  container?: string;
  container_config?: ContainerConfigJson;
  created: string;
  docker_version?: string;
  author?: string;
  history: Array<{ created: string; created_by?: string; comment?: string; empty_layer?: boolean; author?: string }>;
  os: string;
  rootfs: { type: 'layers'; diff_ids: string[] };
}

export async function imageConfigDoc(layout: StoreLayout, id: ImageId): Promise<ImageConfigDocJson> {
  const json = await readImage(layout, id);
  const chain = (await imageChain(layout, id)).reverse();
  const history = chain.map((c) => {
    const h: ImageConfigDocJson['history'][number] = { created: c.json.created };
    const by = createdBy(c.json);
    if (by) h.created_by = by;
    if (c.json.comment) h.comment = c.json.comment;
    if (c.json.throwaway) h.empty_layer = true;
    return h;
  });
  const doc: ImageConfigDocJson = {
    architecture: json.architecture, config: json.config, created: json.created, history, os: json.os,
    rootfs: { type: 'layers', diff_ids: await diffIds(layout, id) },
  };
  if (json.container) doc.container = json.container;
  if (json.container_config) doc.container_config = json.container_config;
  if (json.docker_version) doc.docker_version = json.docker_version;
  return doc;
}

/** `docker image inspect` of one image. */
export async function inspectImage(layout: StoreLayout, id: ImageId): Promise<Record<string, unknown>> {
  const json = await readImage(layout, id);
  const tags = listTags(await readRepositories(layout)).filter((t) => t.id === id).map((t) => `${t.repository}:${t.tag}`).sort();
  return {
    Id: `sha256:${id}`,
    RepoTags: tags,
    RepoDigests: [],
    Parent: json.parent ? `sha256:${json.parent}` : '',
    Comment: json.comment ?? '',
    Created: json.created,
    Container: json.container ?? '',
    ContainerConfig: json.container_config,
    DockerVersion: json.docker_version,
    Author: json.author ?? '',
    Config: json.config,
    Architecture: json.architecture,
    Os: json.os,
    Size: await virtualSize(layout, id),
    GraphDriver: { Name: 'overlay', Data: { LowerDir: '', UpperDir: layout.layerDir(id) } },
    RootFS: { Type: 'layers', Layers: await diffIds(layout, id) },
    Metadata: { LastTagTime: '0001-01-01T00:00:00Z' },
  };
}
