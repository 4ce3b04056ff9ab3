import { parseNetwork, sandboxFromFlags, withinCeilings, type SandboxFlagValues } from '../sandbox/limits.js';
import { checkPlatform } from '../dockerfile/platform.js';
import { buildExtrasQuery, type BuildExtrasQuery } from './build-params.js';
import { CacheFrom } from '../registry/cache-from.js';
import { loadCacheSources } from '../registry/cache-from-registry.js';
import type { SandboxOptions } from '../sandbox/container.js';
import type { NetworkMode } from '../sandbox/oci-spec.js';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { ServerResponse } from 'node:http';
import { SlipwayError, detailOf } from '../errors.js';
import { build } from '../scheduler/build.js';
import { pullBaseImage } from '../registry/pull.js';
import { renderLegacy, type BuildEvent } from '../scheduler/progress.js';
import { ensureStore, makeTmpDir } from '../store/graph.js';
import { ApiError, badParameter, sendError, toApiError } from './http-errors.js';
import { boolParam, stringMapParam } from './body.js';
import { familiarName } from './names.js';
import { dockerfileWithLabels, locateDockerfile, pinDockerignore, receiveContext } from './build-context.js';
import { outcomeOf, tapBuild } from './metrics-route.js';
import type { ApiContext, ApiRequest } from './api-context.js';

/** What `POST /build`'s query asks for, checked before a byte of the body is read. */
interface BuildQuery {
  tags: string[];
  quiet: boolean;
  noCache: boolean;
  dockerfile: string | undefined;
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  target: string | undefined;
  rm: boolean;
  network: NetworkMode;
  /** The resource limits the request asks for (Docker's memory, memswap, cpu… parameters). */
  sandbox: SandboxOptions;
  /** extrahosts, ulimits, shmsize, cachefrom, pull. */
  extras: BuildExtrasQuery;
}

/**
 * Docker's resource parameters (`docker build --memory 64m` sends memory=67108864): a value of
 * 0 or absent is "not asked". They are checked against the server's ceilings later.
 */
function askedSandbox(q: URLSearchParams): SandboxOptions {
  const num = (name: string): number | undefined => {
    const v = q.get(name);
    if (v === null || v === '' || v === '0') return undefined;
    if (!/^-?\d+$/.test(v)) throw badParameter(`invalid ${name}: ${v}`);
    return Number(v);
  };
  const flags: SandboxFlagValues = {};
  const memory = num('memory');
  const swap = num('memswap');
  if (memory !== undefined) flags.memory = String(memory);
  if (swap !== undefined) flags['memory-swap'] = String(swap);
  for (const [param, flag] of [['cpushares', 'cpu-shares'], ['cpuperiod', 'cpu-period'], ['cpuquota', 'cpu-quota']] as const) {
    const v = num(param);
    if (v !== undefined) flags[flag] = String(v);
  }
  const cpuset = q.get('cpusetcpus');
  if (cpuset) flags['cpuset-cpus'] = cpuset;
  try {
    return sandboxFromFlags(flags);
  } catch (e) {
    throw badParameter((e as Error).message);
  }
}

function parseBuildQuery(q: URLSearchParams): BuildQuery {
  if ((q.get('version') ?? '1') === '2') throw badParameter('BuildKit builds (version=2) are not supported by slipway: set DOCKER_BUILDKIT=0');
  if (q.get('remote')) throw badParameter('remote build contexts are not supported: send the context as a tar');
  const tags: string[] = [];
  for (const t of q.getAll('t')) {
    if (t === '') continue;
    if (t.includes('@')) throw badParameter(`invalid tag ${t}: refusing to create a tag with a digest reference`);
    const name = familiarName(t);
    if (!tags.includes(name)) tags.push(name);
  }
  let network: NetworkMode;
  try {
    // Only the host's platform can be built (docker build --platform sends it here).
    if (q.get('platform')) checkPlatform(q.get('platform')!);
    network = parseNetwork(q.get('networkmode') ?? undefined);
  } catch (e) {
    throw badParameter((e as Error).message);
  }
  const buildArgs: Record<string, string> = {};
  // A null value is `--build-arg NAME` with NAME unset on the client: declared, no value.
  for (const [k, v] of Object.entries(stringMapParam(q, 'buildargs', true))) if (v !== null) buildArgs[k] = v;
  return {
    tags,
    quiet: boolParam(q, 'q'),
    noCache: boolParam(q, 'nocache'),
    dockerfile: q.get('dockerfile') || undefined,
    buildArgs,
    labels: stringMapParam(q, 'labels', false) as Record<string, string>,
    target: q.get('target') || undefined,
    // Docker removes intermediate containers unless rm=0 (forcerm forces it back on).
    rm: boolParam(q, 'rm', true) || boolParam(q, 'forcerm'),
    network,
    sandbox: askedSandbox(q),
    extras: buildExtrasQuery(q),
  };
}

/**
 * The events dockerd's legacy builder has words for. Slipway's own (cache-miss explanations,
 * the cache summary) stay out of the API stream: scripts parse `docker build` output, and many
 * take `Successfully built <id>` from its last lines.
 */
const DOCKER_EVENTS: ReadonlySet<BuildEvent['type']> = new Set<BuildEvent['type']>([
  'warning', 'step', 'base', 'triggers', 'cache-hit', 'running', 'output', 'removed', 'image', 'built', 'tagged',
]);

/** The most a quiet build keeps of its progress, to replay before its error. */
const QUIET_LOG_MAX = 1024 * 1024;

/**
 * The build's response: JSON messages, each followed by `\r\n` as moby's stream formatter
 * writes them. Nothing is written until the first message, so an error before any progress
 * (a Dockerfile that does not parse, a missing base) is still a plain HTTP error.
 */
class BuildStream {
  private started = false;
  private quietLog = '';

  constructor(private readonly res: ServerResponse, private readonly quiet: boolean, private readonly rm: boolean) {}

  private write(msg: unknown): void {
    if (this.res.destroyed) return;
    if (!this.started) {
      this.res.writeHead(200, { 'Content-Type': 'application/json' });
      this.started = true;
    }
    this.res.write(`${JSON.stringify(msg)}\r\n`);
  }

  event(e: BuildEvent): void {
    if (!DOCKER_EVENTS.has(e.type) || (e.type === 'removed' && !this.rm)) return;
    // The CLI keeps the last aux ID (for --iidfile); moby sends it even when quiet.
    if (e.type === 'built') this.write({ aux: { ID: `sha256:${e.id}` } });
    const text = renderLegacy(e);
    if (this.quiet) this.quietLog = (this.quietLog + text).slice(-QUIET_LOG_MAX);
    else this.write({ stream: text });
  }

  success(id: string): void {
    if (this.quiet) this.write({ stream: `sha256:${id}\n` });
    this.res.end();
  }

  fail(e: unknown): void {
    if (this.quiet && this.quietLog) this.write({ stream: this.quietLog });
    if (!this.started) {
      sendError(this.res, toApiError(dockerMessage(e)));
      return;
    }
    const err = toApiError(e);
    // The CLI exits with errorDetail.code: a RUN's own status passes through.
    const code = e instanceof SlipwayError ? e.exitCode : 1;
    this.write({ errorDetail: { code, message: err.message }, error: err.message });
    this.res.end();
  }
}

const sorted = (m: Record<string, string>) => Object.entries(m).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

/** Before any progress, a parse error reads as dockerd's: `dockerfile parse error line 2: ...`. */
function dockerMessage(e: unknown): unknown {
  if (!(e instanceof SlipwayError) || e.code !== 'ERR_DOCKERFILE_SYNTAX' || e.line === undefined) return e;
  const detail = detailOf(e);
  return detail !== e.message ? new SlipwayError(e.code, `dockerfile parse error line ${e.line}: ${detail}`, { line: e.line }) : e;
}

/** The build's sandbox: the server's defaults and ceilings, the request's limits and container options. */
function buildSandbox(q: BuildQuery, ctx: ApiContext): SandboxOptions {
  const { extraHosts, ulimits, shmSize } = q.extras;
  try {
    return { ...withinCeilings(q.sandbox, ctx.policy.sandbox), extraHosts, ulimits, ...(shmSize !== undefined ? { shmSize } : {}) };
  } catch (e) {
    throw badParameter((e as Error).message);
  }
}

/**
 * `POST /build`: the context tar is read whole into `graph/_tmp/`, then built with the shared
 * worker pool, store and cache, exactly as a local context is. A client that goes away aborts
 * the build: running steps are killed and nothing after them is committed or tagged.
 */
export async function buildRoute({ req, res, query }: ApiRequest, ctx: ApiContext): Promise<void> {
  const q = parseBuildQuery(query);
  await ensureStore(ctx.layout);
  const work = await makeTmpDir(ctx.layout, 'api-build');
  const abort = new AbortController();
  let clientGone = false;
  const onClose = () => {
    if (res.writableFinished) return;
    clientGone = true;
    abort.abort();
  };
  res.once('close', onClose);
  const untrack = ctx.trackBuild(abort);
  const out = new BuildStream(res, q.quiet, q.rm);
  const tap = tapBuild(ctx.metrics);
  try {
    const contextDir = path.join(work, 'context');
    const bodyDigest = await receiveContext(req, contextDir, ctx.limits.maxContextBytes);
    await pinDockerignore(contextDir);
    let dockerfile = await locateDockerfile(contextDir, q.dockerfile);
    if (Object.keys(q.labels).length > 0) {
      // The labelled copy lives beside the context, never in it, so `COPY .` cannot see it.
      const copy = path.join(work, 'dockerfile', path.basename(dockerfile));
      await fs.mkdir(path.dirname(copy));
      await fs.writeFile(copy, dockerfileWithLabels(await fs.readFile(dockerfile, 'utf8'), q.labels, q.target));
      dockerfile = copy;
    }
    const sandbox = buildSandbox(q, ctx);
    const run = () => build({
      layout: ctx.layout, contextDir, dockerfile: path.relative(contextDir, dockerfile), tags: q.tags, buildArgs: q.buildArgs,
      ...(q.target !== undefined ? { target: q.target } : {}), noCache: q.noCache, network: q.network, executor: ctx.pool,
      sandbox, allowHostNetwork: ctx.policy.entitlements.includes('network.host'), allowInsecure: ctx.policy.entitlements.includes('security.insecure'), pull: q.extras.pull,
      ...(q.extras.cacheFrom.length > 0 ? { remote: new CacheFrom(ctx.layout, () => loadCacheSources(ctx.layout, q.extras.cacheFrom, { insecureRegistries: ctx.insecureRegistries }, (text) => out.event({ type: 'warning', text }))) } : {}),
      onEvent: (e) => { tap.event(e); out.event(e); }, signal: abort.signal, persistStatCache: false,
      // A missing base from a named registry is pulled, as dockerd does (anonymously here).
      fetchBase: (ref) => pullBaseImage({
        layout: ctx.layout, ref, insecureRegistries: ctx.insecureRegistries,
        onProgress: (p) => { if (p.status) out.event({ type: 'output', text: `${p.id ? `${p.id}: ` : ''}${p.status}\n` }); },
      }),
    });
    // Tags and output options do not change the image: they stay out of the key.
    const key = JSON.stringify([bodyDigest, q.dockerfile ?? '', sorted(q.buildArgs), sorted(q.labels), q.target ?? '', q.network, sandbox, q.extras.cacheFrom, q.extras.pull]);
    const { id } = q.noCache ? await run() : await ctx.identicalBuilds.run(key, run);
    tap.done('success');
    out.success(id);
  } catch (e) {
    tap.done(abort.signal.aborted ? 'cancelled' : outcomeOf(e));
    if (clientGone) return; // nobody left to tell
    if (abort.signal.aborted) out.fail(new ApiError(503, 'build cancelled: the server is shutting down'));
    else out.fail(e);
  } finally {
    res.off('close', onClose);
    untrack();
    await fs.rm(work, { recursive: true, force: true });
  }
}
