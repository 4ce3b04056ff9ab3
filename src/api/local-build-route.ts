import fs from 'node:fs';
import path from 'node:path';
import type { IncomingMessage } from 'node:http';
import type { Server } from 'node:net';
import { build } from '../scheduler/build.js';
import { pullBaseImage } from '../registry/pull.js';
import { parseReference } from '../store/reference.js';
import { ApiError, badParameter } from './http-errors.js';
import { readSmallBody } from './body.js';
import { socketPathOf } from './unix-sockets.js';
import { outcomeOf, tapBuild } from './metrics-route.js';
import type { ApiContext, ApiRequest } from './api-context.js';
import { eventsAnswer, renderedAnswer } from './rendered-answer.js';

/** What `slipway build` sends a running engine on this machine: the build, with its context as a folder. */
export interface LocalBuildRequest {
  contextDir: string;
  dockerfile?: string;
  tags: string[];
  buildArgs: Record<string, string>;
  target?: string;
  noCache: boolean;
  /** Asked by the native client: the answer is the rendered output (rendered-answer.ts), `-q`'s when `quiet`. */
  render?: { quiet: boolean };
}

export type { LocalBuildMessage } from './rendered-answer.js';

/**
 * True when the request came over a unix socket that only root can open (owned by root, no
 * access for others). Naming a host folder as the context reads it with the engine's rights,
 * so only a client with those rights already may do it: never over TCP.
 */
function fromRootOnlySocket(req: IncomingMessage): boolean {
  const where = socketPathOf((req.socket as unknown as { server?: Server }).server);
  if (where === undefined) return false;
  const st = fs.statSync(where, { throwIfNoEntry: false });
  return st !== undefined && st.uid === 0 && (st.mode & 0o007) === 0;
}

function parseRequest(raw: Buffer): LocalBuildRequest {
  let r: Partial<LocalBuildRequest>;
  try {
    r = JSON.parse(raw.toString('utf8')) as Partial<LocalBuildRequest>;
  } catch {
    throw badParameter('the local build request is not JSON');
  }
  const strings = (v: unknown) => typeof v === 'object' && v !== null && Object.values(v).every((x) => typeof x === 'string');
  if (typeof r.contextDir !== 'string' || !path.isAbsolute(r.contextDir)) throw badParameter('contextDir must be an absolute path');
  if (!Array.isArray(r.tags) || !r.tags.every((t) => typeof t === 'string') || !strings(r.buildArgs)) throw badParameter('tags and buildArgs must be strings');
  if ((r.dockerfile !== undefined && typeof r.dockerfile !== 'string') || (r.target !== undefined && typeof r.target !== 'string')) throw badParameter('dockerfile and target must be strings');
  if (r.render !== undefined && (typeof r.render !== 'object' || r.render === null)) throw badParameter('render must be an object');
  for (const t of r.tags) parseReference(t);
  return {
    contextDir: r.contextDir, tags: r.tags, buildArgs: r.buildArgs!, noCache: r.noCache === true, ...(r.dockerfile !== undefined ? { dockerfile: r.dockerfile } : {}),
    ...(r.target !== undefined ? { target: r.target } : {}), ...(r.render !== undefined ? { render: { quiet: r.render.quiet === true } } : {}),
  };
}

/**
 * `POST /slipway/v1/local-builds`: the resident engine. `slipway build` on this machine, when
 * `serve` runs on its root's socket, hands the build here instead of starting an engine of its
 * own: the context is read in place (with the engine's stat cache), the steps run in the
 * engine's warm worker pool, and every event goes back as one JSON line for the client to
 * render (or, to the native client, the rendered text: rendered-answer.ts). The operator's
 * sandbox policy applies as to any build of this server. A client that goes away cancels the
 * build.
 */
export async function localBuildRoute({ req, res }: ApiRequest, ctx: ApiContext): Promise<void> {
  if (!fromRootOnlySocket(req)) throw new ApiError(403, 'a build from a local folder is taken only on a unix socket that only root can open');
  const r = parseRequest(await readSmallBody(req, ctx.limits.maxSmallBodyBytes));
  const abort = new AbortController();
  const onClose = () => { if (!res.writableFinished) abort.abort(); };
  res.once('close', onClose);
  const untrack = ctx.trackBuild(abort);
  const tap = tapBuild(ctx.metrics);
  const answer = r.render ? renderedAnswer(res, r.render.quiet) : eventsAnswer(res);
  try {
    const { id } = await build({
      layout: ctx.layout, contextDir: r.contextDir, ...(r.dockerfile !== undefined ? { dockerfile: r.dockerfile } : {}), tags: r.tags,
      buildArgs: r.buildArgs, ...(r.target !== undefined ? { target: r.target } : {}), noCache: r.noCache, executor: ctx.pool,
      sandbox: ctx.policy.sandbox, allowHostNetwork: ctx.policy.entitlements.includes('network.host'),
      onEvent: (e) => { tap.event(e); answer.event(e); }, signal: abort.signal,
      fetchBase: (ref) => pullBaseImage({ layout: ctx.layout, ref, insecureRegistries: ctx.insecureRegistries }),
    });
    tap.done('success');
    answer.done(id);
  } catch (e) {
    tap.done(abort.signal.aborted ? 'cancelled' : outcomeOf(e));
    answer.error(e);
  } finally {
    res.off('close', onClose);
    untrack();
    res.end();
  }
}
