import { pipeline } from 'node:stream/promises';
import { readImage, resolveImage } from '../store/graph.js';
import { listImages, imageHistory, inspectImage } from '../store/inspect.js';
import { removeImage } from '../store/remove.js';
import { updateRepositories } from '../store/repositories.js';
import { parseReference } from '../store/reference.js';
import { loadImages, saveImages } from '../registry/archive.js';
import type { ImageId } from '../store/layout.js';
import { ApiError, badParameter } from './http-errors.js';
import { boolParam, byteLimit, jsonParam, requestBody, sendJson } from './body.js';
import { familiarName } from './names.js';
import type { ApiContext, ApiRequest } from './api-context.js';

const unixSeconds = (iso: string) => Math.floor(Date.parse(iso) / 1000);

/** The `filters` query of `GET /images/json`, in either of the CLI's encodings. */
function parseFilters(q: URLSearchParams): Map<string, string[]> {
  const raw = jsonParam(q, 'filters');
  const out = new Map<string, string[]>();
  if (raw === undefined || raw === null) return out;
  if (typeof raw !== 'object' || Array.isArray(raw)) throw badParameter('invalid filter: filters must be a JSON object');
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    // Current CLIs send {"reference":{"foo":true}}, old ones {"reference":["foo"]}.
    const values = Array.isArray(v) ? v : v && typeof v === 'object' ? Object.keys(v) : undefined;
    if (!values || !values.every((x) => typeof x === 'string')) throw badParameter(`invalid filter '${k}'`);
    if (!['reference', 'dangling', 'label'].includes(k)) throw badParameter(`invalid filter '${k}' (slipway supports reference, dangling and label)`);
    out.set(k, values as string[]);
  }
  return out;
}

/** Go's path.Match for `*` and `?` (what Docker's reference filter uses). */
function globRegExp(pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]');
  return new RegExp(`^${body}$`);
}

/** Whether `repo:tag` matches one of the patterns (by full reference or by repository). */
function referenceMatches(patterns: RegExp[], repoTag: string): boolean {
  const repo = repoTag.slice(0, repoTag.lastIndexOf(':'));
  return patterns.some((p) => p.test(repoTag) || p.test(repo));
}

/** `GET /images/json`: one summary per image, tags grouped, newest first. */
export async function listImagesRoute({ res, query }: ApiRequest, ctx: ApiContext): Promise<void> {
  const filters = parseFilters(query);
  const refPatterns = (filters.get('reference') ?? []).map((p) => globRegExp(familiarName(p)));
  const dangling = filters.get('dangling')?.[0];
  const labels = filters.get('label') ?? [];
  const rows = await listImages(ctx.layout, boolParam(query, 'all'));
  const byId = new Map<string, { tags: string[]; row: (typeof rows)[number] }>();
  for (const r of rows) {
    const e = byId.get(r.id) ?? { tags: [], row: r };
    if (r.repository !== '<none>') e.tags.push(`${r.repository}:${r.tag}`);
    byId.set(r.id, e);
  }
  const out: unknown[] = [];
  for (const [id, { tags: allTags, row }] of byId) {
    const json = await readImage(ctx.layout, id as ImageId).catch(() => undefined);
    if (!json) continue;
    let tags = allTags.sort();
    if (dangling !== undefined && (dangling === 'true' || dangling === '1') !== (tags.length === 0)) continue;
    if (refPatterns.length > 0) {
      tags = tags.filter((t) => referenceMatches(refPatterns, t));
      if (tags.length === 0) continue;
    }
    const imageLabels = json.config?.Labels ?? {};
    if (!labels.every((l) => (l.includes('=') ? imageLabels[l.slice(0, l.indexOf('='))] === l.slice(l.indexOf('=') + 1) : l in imageLabels))) continue;
    out.push({
      Id: `sha256:${id}`, ParentId: json.parent ? `sha256:${json.parent}` : '', RepoTags: tags, RepoDigests: [],
      Created: unixSeconds(row.created), Size: row.virtualSize, SharedSize: -1, Labels: json.config?.Labels ?? null, Containers: -1,
    });
  }
  sendJson(res, 200, out);
}

/** `GET /images/{name}/json`: inspect, in the API >= 1.45 shape (no Container/ContainerConfig). */
export async function inspectImageRoute({ res, name }: ApiRequest, ctx: ApiContext): Promise<void> {
  const doc = await inspectImage(ctx.layout, await resolveImage(ctx.layout, familiarName(name)));
  delete doc['Container'];
  delete doc['ContainerConfig'];
  sendJson(res, 200, doc);
}

/** `GET /images/{name}/history`: newest first; every step of a local build has a real id. */
export async function historyRoute({ res, name }: ApiRequest, ctx: ApiContext): Promise<void> {
  const rows = await imageHistory(ctx.layout, await resolveImage(ctx.layout, familiarName(name)));
  sendJson(res, 200, rows.map((r) => ({
    Id: `sha256:${r.id}`, Created: unixSeconds(r.created), CreatedBy: r.createdBy, Tags: r.tags.length ? r.tags : null, Size: r.size, Comment: r.comment,
  })));
}

/** `POST /images/{name}/tag?repo=&tag=`: 201 and no body. `repo` arrives normalized (`docker.io/library/x`). */
export async function tagRoute({ res, name, query }: ApiRequest, ctx: ApiContext): Promise<void> {
  const repo = query.get('repo') ?? '';
  const tag = query.get('tag') ?? '';
  if (repo === '') throw badParameter('repository name must have at least one component');
  if (repo.includes('@') || tag.includes('@')) throw badParameter('refusing to create a tag with a digest reference');
  const ref = parseReference(familiarName(tag ? `${repo}:${tag}` : repo));
  const id = await resolveImage(ctx.layout, familiarName(name));
  await updateRepositories(ctx.layout, (r) => { (r.Repositories[ref.repository] ??= {})[ref.tag] = id; });
  res.writeHead(201, { 'Content-Length': 0 });
  res.end();
}

/** `DELETE /images/{name}?force=`: `[{"Untagged": ...}, {"Deleted": ...}]`, 409 on a conflict. */
export async function deleteImageRoute({ res, name, query }: ApiRequest, ctx: ApiContext): Promise<void> {
  sendJson(res, 200, await removeImage(ctx.layout, familiarName(name), boolParam(query, 'force')));
}

/** `GET /images/get?names=...` and `GET /images/{name}/get`: a `docker save` tar, streamed. */
export async function saveRoute({ res, name, query }: ApiRequest, ctx: ApiContext): Promise<void> {
  const names = (name ? [name] : query.getAll('names')).map(familiarName);
  if (names.length === 0) throw badParameter('no image names given (names=...)');
  // Every name must resolve before the first byte: after that an error can only cut the stream.
  for (const n of names) await resolveImage(ctx.layout, n);
  res.writeHead(200, { 'Content-Type': 'application/x-tar' });
  await saveImages(ctx.layout, names, res);
}

/**
 * `POST /images/load`: the body is a `docker save` tar. The whole archive is loaded before the
 * answer starts, so a bad archive is a plain 400; the answer is always JSON (the CLI decodes
 * messages only then).
 */
export async function loadRoute({ req, res }: ApiRequest, ctx: ApiContext): Promise<void> {
  const max = ctx.limits.maxLoadBytes;
  if (Number(req.headers['content-length'] ?? 0) > max) throw new ApiError(413, `load archive exceeds the server's limit of ${max} bytes`);
  const limit = byteLimit(max, 'load archive');
  let tooBig: ApiError | undefined;
  limit.on('error', (e) => { if (e instanceof ApiError) tooBig = e; });
  const fed = pipeline(requestBody(req), limit).catch(() => undefined);
  let loaded: Awaited<ReturnType<typeof loadImages>>;
  try {
    loaded = await loadImages(ctx.layout, limit);
  } catch (e) {
    // The archive reader reports a cut stream as a bad archive; the real cause is the limit.
    throw tooBig ?? e;
  } finally {
    limit.destroy();
    await fed;
  }
  res.writeHead(200, { 'Content-Type': 'application/json' });
  for (const r of loaded) {
    if (r.tags.length === 0) res.write(`${JSON.stringify({ stream: `Loaded image ID: sha256:${r.id}\n` })}\r\n`);
    for (const t of r.tags) res.write(`${JSON.stringify({ stream: `Loaded image: ${t}\n` })}\r\n`);
  }
  res.end();
}

/** The container, network, volume and plugin lookups `docker inspect` probes: clean 404s. */
export const missingObject = {
  container: ({ name }: ApiRequest) => notFoundOf(`No such container: ${name}`),
  network: ({ name }: ApiRequest) => notFoundOf(`network ${name} not found`),
  volume: ({ name }: ApiRequest) => notFoundOf(`get ${name}: no such volume`),
  plugin: ({ name }: ApiRequest) => notFoundOf(`plugin "${name}" not found`),
};

async function notFoundOf(message: string): Promise<void> {
  throw new ApiError(404, message);
}
