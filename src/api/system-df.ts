import { listImages } from '../store/inspect.js';
import { readImage, resolveImage } from '../store/graph.js';
import { removeImage, type RemoveEvent } from '../store/remove.js';
import { runningIds } from '../cache/prune.js';
import { imageChain, readLayerSize } from '../store/graph.js';
import type { ImageId } from '../store/layout.js';
import { badParameter } from './http-errors.js';
import { jsonParam, sendJson } from './body.js';
import type { ContainerApiContext as ApiContext, ContainerApiRequest as ApiRequest } from './container-context.js';

/** Image summaries as `/images/json` gives them, with the number of containers that use each. */
async function imageSummaries(ctx: ApiContext): Promise<Array<Record<string, unknown>>> {
  const rows = await listImages(ctx.layout, false);
  const byId = new Map<string, { tags: string[]; row: (typeof rows)[number] }>();
  for (const r of rows) {
    const e = byId.get(r.id) ?? { tags: [], row: r };
    if (r.repository !== '<none>') e.tags.push(`${r.repository}:${r.tag}`);
    byId.set(r.id, e);
  }
  const used = new Map<string, number>();
  for (const c of ctx.containers.list()) used.set(c.imageId, (used.get(c.imageId) ?? 0) + 1);
  const out: Array<Record<string, unknown>> = [];
  for (const [id, { tags, row }] of byId) {
    const json = await readImage(ctx.layout, id as ImageId).catch(() => undefined);
    out.push({
      Id: `sha256:${id}`, ParentId: json?.parent ? `sha256:${json.parent}` : '', RepoTags: tags.sort(), RepoDigests: [],
      Created: Math.floor(Date.parse(row.created) / 1000), Size: row.virtualSize, SharedSize: -1, Labels: json?.config?.Labels ?? null, Containers: used.get(id) ?? 0,
    });
  }
  return out;
}

/** `GET /system/df` (`docker system df`): images and containers; no volumes, and the build cache lives in images. */
export async function systemDfRoute({ res, query }: ApiRequest, ctx: ApiContext): Promise<void> {
  const types = query.getAll('type');
  for (const t of types) if (!['container', 'image', 'volume', 'build-cache'].includes(t)) throw badParameter(`unknown object type: ${t.slice(0, 32)}`);
  const want = (t: string) => types.length === 0 || types.includes(t);
  const images = want('image') ? await imageSummaries(ctx) : [];
  let layers = 0;
  for (const id of new Set(images.map((i) => String(i['Id']).slice(7)))) {
    for (const c of await imageChain(ctx.layout, id as ImageId).catch(() => [])) layers += await readLayerSize(ctx.layout, c.id).catch(() => 0);
  }
  const containers = want('container') ? ctx.containers.list().map((c) => ({
    Id: c.id, Names: [`/${c.name}`], Image: c.req.image, ImageID: `sha256:${c.imageId}`, Command: [...(c.req.entrypoint ?? []), ...(c.req.cmd ?? [])].join(' '),
    Created: Math.floor(Date.parse(c.created) / 1000), State: c.state, Status: c.state, SizeRw: 0, SizeRootFs: 0, Labels: c.req.labels, Mounts: [],
  })) : [];
  sendJson(res, 200, { LayersSize: layers, Images: images, Containers: containers, Volumes: [], BuildCache: [] });
}

/** The `dangling` filter of `POST /images/prune`: true (the default) or false (`-a`). */
function danglingOnly(q: URLSearchParams): boolean {
  const raw = jsonParam(q, 'filters');
  if (raw === undefined || raw === null) return true;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw badParameter('invalid filter: filters must be a JSON object');
  let dangling = true;
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (k !== 'dangling') throw badParameter(`invalid filter '${k.slice(0, 32)}' (slipway's image prune supports dangling only)`);
    const values = Array.isArray(v) ? v : v && typeof v === 'object' ? Object.keys(v) : [];
    if (values.length !== 1 || !['true', 'false', '1', '0'].includes(String(values[0]))) throw badParameter(`invalid filter 'dangling=${String(values[0]).slice(0, 16)}'`);
    dangling = values[0] === 'true' || values[0] === '1';
  }
  return dangling;
}

/**
 * `POST /images/prune` (`docker image prune [-a]`): removes untagged top-level images (with
 * `dangling=false`, every image) that no container and no running build uses, each as `rmi`
 * would, with the untagged parents that nothing needs any more.
 */
export async function pruneImagesRoute({ res, query }: ApiRequest, ctx: ApiContext): Promise<void> {
  const dangling = danglingOnly(query);
  const keep = new Set<string>();
  for (const id of [...ctx.containers.list().map((c) => c.imageId as string), ...(await runningIds(ctx.layout))]) {
    for (const c of await imageChain(ctx.layout, id as ImageId).catch(() => [])) keep.add(c.id);
  }
  const events: RemoveEvent[] = [];
  let reclaimed = 0;
  for (const row of await listImages(ctx.layout, false)) {
    const untagged = row.repository === '<none>';
    if ((dangling && !untagged) || keep.has(row.id)) continue;
    const ref = untagged ? row.id : `${row.repository}:${row.tag}`;
    const sizes = new Map<string, number>();
    for (const c of await imageChain(ctx.layout, row.id).catch(() => [])) sizes.set(c.id, await readLayerSize(ctx.layout, c.id).catch(() => 0));
    // Gone already (an earlier removal took it as a parent), or given children since: skip it.
    if (!(await resolveImage(ctx.layout, ref).then(() => true, () => false))) continue;
    const got = await removeImage(ctx.layout, ref).catch(() => [] as RemoveEvent[]);
    for (const e of got) if ('Deleted' in e) reclaimed += sizes.get(e.Deleted.slice(7)) ?? 0;
    events.push(...got);
  }
  sendJson(res, 200, { ImagesDeleted: events.length > 0 ? events : null, SpaceReclaimed: reclaimed });
}
