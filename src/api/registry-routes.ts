import { SlipwayError } from '../errors.js';
import { pushImage, ROOT_REPOSITORY_MESSAGE } from '../registry/push.js';
import { pullImage } from '../registry/pull.js';
import { credentialsFromRegistryAuth, verifyLogin } from '../registry/auth.js';
import { normalizeRegistry, parseRemoteReference } from '../registry/remote-reference.js';
import type { Platform } from '../registry/manifest.js';
import { ApiError, badParameter } from './http-errors.js';
import { readSmallBody, sendJson } from './body.js';
import { familiarName } from './names.js';
import { ProgressStream, type StreamMessage } from './json-stream.js';
import type { ApiContext, ApiRequest } from './api-context.js';

/** How often one layer's `Pushing`/`Downloading` update is sent at most (moby: 100 ms). */
const PROGRESS_INTERVAL_MS = 100;

/** A pull has not resolved its manifest while it only says where it pulls from (moby says so only after). */
const beforePullContact = (m: StreamMessage) => (m.status ?? '').startsWith('Pulling from ');

/** The `X-Registry-Auth` header (base64url JSON of Docker's AuthConfig), if sent. */
function registryHeader(r: ApiRequest): string | undefined {
  const h = r.req.headers['x-registry-auth'];
  return Array.isArray(h) ? h[0] : h;
}

/** The registry code tells people to `slipway login`; through this API they log in with `docker login`. */
function dockerWording(e: unknown): unknown {
  if (!(e instanceof SlipwayError) || !e.message.includes('slipway login')) return e;
  return new SlipwayError(e.code, e.message.replace(/slipway login/g, 'docker login'), { exitCode: e.exitCode });
}

/**
 * `POST /images/{name}/push?tag=`: `{name}` arrives normalized (`docker.io/library/foo`,
 * `127.0.0.1:5000/thoward/scooby_snacks`) and is pushed under its familiar name. An empty `tag`
 * pushes every tag of the repository (`docker push -a`). `X-Registry-Auth` carries the
 * credentials. As with dockerd, the answer starts with `The push refers to repository [...]`,
 * so a refusal by the registry (even a 401) arrives in the stream: the CLI prints it and exits 1
 * rather than prompting for a login on a terminal it may not have (CLI 28 waits forever then).
 */
export async function pushRoute(r: ApiRequest, ctx: ApiContext): Promise<void> {
  const tag = r.query.get('tag') ?? '';
  if (tag.includes('@') || tag.includes('/')) throw badParameter(`invalid tag format: ${JSON.stringify(tag)}`);
  const name = familiarName(r.name);
  const out = new ProgressStream(r.res, { throttleMs: PROGRESS_INTERVAL_MS });
  // The seed's refusal is printed as the old client printed it: the bare message, exit 1.
  if (parseRemoteReference(name).root) return out.fail(new SlipwayError('ERR_INVALID_REFERENCE', ROOT_REPOSITORY_MESSAGE), { inStream: true });
  try {
    await pushImage({
      layout: ctx.layout, ref: tag ? `${name}:${tag}` : name, allTags: tag === '',
      credentials: credentialsFromRegistryAuth(registryHeader(r)), insecureRegistries: ctx.insecureRegistries, onProgress: out.message,
    });
    out.end();
  } catch (e) {
    out.fail(dockerWording(e));
  }
}

/** `platform=os/arch[/variant]` of a pull; empty means this engine's own. */
function parsePlatform(spec: string | null): Platform | undefined {
  if (!spec) return undefined;
  const [os, architecture, variant, extra] = spec.toLowerCase().split('/');
  if (!os || !architecture || extra !== undefined) throw badParameter(`invalid platform ${JSON.stringify(spec)}: use os/arch[/variant]`);
  return { os, architecture, ...(variant ? { variant } : {}) };
}

/**
 * `POST /images/create?fromImage=&tag=`: a pull. `tag` is a tag or a digest (`sha256:…`).
 * Nothing is written until the manifest is resolved, so an unknown image is a plain 404 the
 * CLI prints as `Error response from daemon: manifest for … not found`. A registry refusing
 * access is a 404 as well (moby's `pull access denied …`), never a 401 that would make the CLI
 * prompt. Importing (`fromSrc`) and pulling every tag (`docker pull -a`) are not supported.
 */
export async function pullRoute(r: ApiRequest, ctx: ApiContext): Promise<void> {
  const { query } = r;
  if (query.get('fromSrc') !== null) throw new ApiError(501, 'importing an image through the API (fromSrc) is not implemented by slipway: use "slipway import"');
  const from = query.get('fromImage') ?? '';
  if (from === '') throw badParameter('fromImage is required');
  const tag = query.get('tag') ?? '';
  // `fromImage` may carry the tag itself (older clients), in which case `tag` is empty.
  const named = familiarName(from);
  const hasOwnTag = /:[^/]*$/.test(named) || named.includes('@');
  if (tag === '' && !hasOwnTag) throw new ApiError(501, 'pulling every tag of a repository (docker pull -a) is not implemented by slipway');
  const ref = tag === '' ? named : `${named}${tag.startsWith('sha256:') ? '@' : ':'}${tag}`;
  const platform = parsePlatform(query.get('platform'));
  const out = new ProgressStream(r.res, { holdWhile: beforePullContact, throttleMs: PROGRESS_INTERVAL_MS });
  try {
    await pullImage({
      layout: ctx.layout, ref, credentials: credentialsFromRegistryAuth(registryHeader(r)), insecureRegistries: ctx.insecureRegistries,
      onProgress: out.message, ...(platform ? { platform } : {}),
    });
    out.end();
  } catch (e) {
    const err = dockerWording(e);
    out.fail(err instanceof SlipwayError && err.code === 'ERR_UNAUTHORIZED' && !out.started ? new ApiError(404, err.message) : err);
  }
}

/**
 * `POST /auth`: `docker login` asks the daemon to check credentials (JSON AuthConfig body) before
 * it stores them in its own config.json; later commands send them as `X-Registry-Auth`.
 * Nothing is stored on the server.
 */
export async function authRoute({ req, res }: ApiRequest, ctx: ApiContext): Promise<void> {
  const body = await readSmallBody(req, ctx.limits.maxSmallBodyBytes);
  let cfg: { username?: unknown; password?: unknown; serveraddress?: unknown; identitytoken?: unknown };
  try {
    cfg = JSON.parse(body.toString('utf8')) as typeof cfg;
  } catch {
    throw badParameter('invalid JSON in the login request');
  }
  if (!cfg || typeof cfg !== 'object') throw badParameter('invalid login request');
  const registry = normalizeRegistry(typeof cfg.serveraddress === 'string' ? cfg.serveraddress : undefined);
  const credentials = typeof cfg.identitytoken === 'string' && cfg.identitytoken
    ? { identityToken: cfg.identitytoken }
    : typeof cfg.username === 'string' && cfg.username && typeof cfg.password === 'string'
      ? { username: cfg.username, password: cfg.password }
      : undefined;
  if (!credentials) throw badParameter('a login needs a username and password, or an identity token');
  await verifyLogin({ registry, credentials, insecureRegistries: ctx.insecureRegistries });
  sendJson(res, 200, { Status: 'Login Succeeded', IdentityToken: '' });
}
