import fs from 'node:fs/promises';
import path from 'node:path';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { SlipwayError } from '../errors.js';
import { publishedWorkerKeys, submitBuild } from '../farm/submit.js';
import { parseSealedSecrets, type SealedSecretsJson } from '../farm/secret-box.js';
import { ensureStore, makeTmpDir } from '../store/graph.js';
import { parseReference } from '../store/reference.js';
import { ApiError, badParameter, notFound, toApiError } from './http-errors.js';
import { boolParam, byteLimit, requestBody, sendJson, stringMapParam } from './body.js';
import { familiarName } from './names.js';
import { followFarmBuild, readFarmBuild, type FarmBuildJson } from '../farm/build-jobs.js';
import type { Principal } from './tenant-tokens.js';
import type { ApiContext, ApiRequest, FarmConfig } from './api-context.js';

/** The farm's endpoints answer 503 until `serve` is told where the farm is. */
function farmOf(ctx: ApiContext): FarmConfig {
  if (!ctx.farm) {
    throw new ApiError(503, 'the build farm is not configured: start "slipway serve" with --redis URL --registry HOST (or REDIS_URL and SLIPWAY_REGISTRY)');
  }
  return ctx.farm;
}

/** Anything but a Slipway error from the queue is Redis being unreachable or failing. */
function farmUnavailable(e: unknown): unknown {
  if (e instanceof SlipwayError || e instanceof ApiError) return e;
  return new ApiError(503, `the build farm is unavailable: ${e instanceof Error ? e.message.split('\n')[0] : String(e)}`);
}

/** What `POST /slipway/v1/builds` asks for, checked before the body is read. */
interface SubmitQuery {
  tags: string[];
  dockerfile: string | undefined;
  buildArgs: Record<string, string>;
  target: string | undefined;
  push: boolean;
  noCache: boolean;
}

/** `X-Slipway-Sealed-Secrets`: base64 of the sealed secrets' JSON (secret-box.ts), or undefined. */
function sealedSecretsHeader(req: ApiRequest['req']): SealedSecretsJson | undefined {
  const h = req.headers['x-slipway-sealed-secrets'];
  if (h === undefined) return undefined;
  if (typeof h !== 'string') throw badParameter('X-Slipway-Sealed-Secrets given twice');
  try {
    return parseSealedSecrets(Buffer.from(h, 'base64').toString('utf8'));
  } catch (e) {
    throw badParameter((e as Error).message);
  }
}

function parseSubmitQuery(q: URLSearchParams): SubmitQuery {
  const tags: string[] = [];
  for (const t of q.getAll('t')) {
    if (t === '') continue;
    if (t.includes('@')) throw badParameter(`invalid tag ${t}: refusing to create a tag with a digest reference`);
    const name = familiarName(t);
    parseReference(name); // a malformed name is a 400 now, not a failed job later
    if (!tags.includes(name)) tags.push(name);
  }
  const buildArgs: Record<string, string> = {};
  for (const [k, v] of Object.entries(stringMapParam(q, 'buildargs', true))) if (v !== null) buildArgs[k] = v;
  // The tenant is the one the token names, never a parameter: naming one is refused, so a
  // client that believes it can choose learns at once that it cannot.
  if (q.has('tenant')) throw badParameter('tenant is not a parameter: a build belongs to the tenant its token names');
  const push = boolParam(q, 'push');
  if (push && tags.length === 0) throw badParameter('push needs at least one tag (t=NAME)');
  return {
    tags, dockerfile: q.get('dockerfile') || undefined, buildArgs, target: q.get('target') || undefined,
    push, noCache: boolParam(q, 'nocache'),
  };
}

/** A context is a tar, plain or compressed as the docker CLI may send it. */
async function checkArchive(file: string): Promise<void> {
  const fh = await fs.open(file, 'r');
  const head = Buffer.alloc(512);
  let n: number;
  try {
    ({ bytesRead: n } = await fh.read(head, 0, 512, 0));
  } finally {
    await fh.close();
  }
  if (n === 0) throw badParameter('the build context is empty: send a tar');
  const b = head.subarray(0, n);
  const compressed = (b[0] === 0x1f && b[1] === 0x8b) || b.subarray(0, 3).toString('latin1') === 'BZh'
    || b.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]));
  const tar = n === 512 && b.subarray(257, 262).toString('latin1') === 'ustar';
  if (!compressed && !tar) throw badParameter('invalid tar archive: the build context must be a tar (plain, gzip, bzip2 or xz)');
}

/**
 * `POST /slipway/v1/builds?t=&dockerfile=&buildargs=&target=&push=&nocache=`: the body is
 * the context tar. It is received into `graph/_tmp/` (bounded like `/build`'s), uploaded to the
 * farm's registry and queued. Answers `{"id", "deduplicated"}`: 201 for a new job, 200 when the
 * same inputs are already queued or running and the existing job is the answer.
 */
export async function submitFarmBuildRoute({ req, res, query, principal }: ApiRequest, ctx: ApiContext): Promise<void> {
  const farm = farmOf(ctx);
  const q = parseSubmitQuery(query);
  const sealedSecrets = sealedSecretsHeader(req);
  const max = ctx.limits.maxContextBytes;
  if (Number(req.headers['content-length'] ?? 0) > max) throw new ApiError(413, `build context exceeds the server's limit of ${max} bytes`);
  await ensureStore(ctx.layout);
  const work = await makeTmpDir(ctx.layout, 'farm-submit');
  try {
    const tar = path.join(work, 'context.tar');
    await pipeline(requestBody(req), byteLimit(max, 'build context'), createWriteStream(tar, { mode: 0o600 }));
    await checkArchive(tar);
    const sub = await submitBuild({
      redisUrl: farm.redisUrl, registry: farm.registry, contextTar: tar, tags: q.tags, buildArgs: q.buildArgs, push: q.push,
      ...(q.dockerfile ? { dockerfile: q.dockerfile } : {}), ...(q.target ? { target: q.target } : {}),
      ...(q.noCache ? { noCache: true } : {}), tenant: principal.tenant, registryCredentials: farm.registryCredentials,
      ...(sealedSecrets ? { sealedSecrets } : {}),
      ...(farm.affinity === false ? { affinity: false } : {}), ...(farm.affinityWaitMs !== undefined ? { affinityWaitMs: farm.affinityWaitMs } : {}),
    }).catch((e: unknown) => { throw farmUnavailable(e); });
    sendJson(res, sub.deduplicated ? 200 : 201, { id: sub.jobId, deduplicated: sub.deduplicated });
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/**
 * `GET /slipway/v1/secret-keys`: the workers' public keys, `{"keys": [{keyId, publicKey, published}]}`,
 * for a client that seals its `--secret` values itself and sends them with its build
 * (`X-Slipway-Sealed-Secrets`), so they cross this server and Redis as ciphertext only.
 */
export async function farmSecretKeysRoute({ res }: ApiRequest, ctx: ApiContext): Promise<void> {
  const farm = farmOf(ctx);
  const keys = await publishedWorkerKeys(farm.redisUrl).catch((e: unknown) => { throw farmUnavailable(e); });
  sendJson(res, 200, { keys });
}

const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;

function jobId(name: string): string {
  if (!JOB_ID.test(name)) throw badParameter(`invalid build id ${JSON.stringify(name)}`);
  return name;
}

/** A build of another tenant is, to this one, no build at all (the operator sees every build). */
async function readOwnBuild(farm: FarmConfig, id: string, principal: Principal): Promise<FarmBuildJson> {
  const build = await readFarmBuild(farm.redisUrl, id).catch((e: unknown) => { throw farmUnavailable(e); });
  if (!build || (!principal.operator && build.tenant !== principal.tenant)) throw notFound(`no such build: ${id}`);
  return build;
}

/** `GET /slipway/v1/builds/{id}`: status (queued, running, succeeded, failed), result and log. */
export async function farmBuildRoute({ res, name, principal }: ApiRequest, ctx: ApiContext): Promise<void> {
  const farm = farmOf(ctx);
  const id = jobId(name);
  const build = await readOwnBuild(farm, id, principal);
  sendJson(res, 200, build);
}

/**
 * `GET /slipway/v1/builds/{id}/events`: the build's output as JSON lines, `{"stream": text}`,
 * from its first line, then `{"result": ...}` once it finishes. A client that goes away, or
 * the server shutting down, ends the answer; the build itself goes on.
 */
export async function farmBuildEventsRoute({ res, name, principal }: ApiRequest, ctx: ApiContext): Promise<void> {
  const farm = farmOf(ctx);
  const id = jobId(name);
  await readOwnBuild(farm, id, principal);
  const abort = new AbortController();
  const onClose = () => abort.abort();
  res.once('close', onClose);
  const untrack = ctx.trackBuild(abort);
  const line = (v: unknown) => { if (!res.destroyed) res.write(`${JSON.stringify(v)}\n`); };
  res.writeHead(200, { 'Content-Type': 'application/json' });
  try {
    const result = await followFarmBuild(farm.redisUrl, id, (text) => line({ stream: text }), abort.signal);
    if (result) line({ result });
  } catch (e) {
    const message = toApiError(farmUnavailable(e)).message;
    line({ errorDetail: { message }, error: message });
  } finally {
    res.off('close', onClose);
    untrack();
    res.end();
  }
}
