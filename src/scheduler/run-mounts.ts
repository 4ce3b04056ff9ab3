/**
 * RUN --mount, from the Dockerfile to the container: each `--mount` value is expanded and
 * parsed (errors name the Dockerfile line), its cache-key part is computed (never a secret's
 * value, never a cache mount's content; a bind's source by content), and, when the step runs,
 * the mounts are made: cache folders taken from the store, secrets written to a private tmpfs
 * folder, bind sources copied, SSH agents forwarded. `release` undoes all of it.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { dockerfileError } from '../errors.js';
import { expandAt } from '../dockerfile/plan.js';
import { lookupIn, type StageState } from '../dockerfile/metadata.js';
import type { RunStep } from '../dockerfile/step.js';
import { parseRunMount, type BindMount, type CacheMount, type RunMount } from '../dockerfile/run-mounts.js';
import { mappingFor, type ContainerMount, type SandboxOptions } from '../sandbox/container.js';
import { hostOwner } from '../sandbox/shift-owners.js';
import { forwardAgent, type AgentForward } from '../sandbox/agent-forward.js';
import { contextTree, copyTree, digestTree, layerTree } from '../snapshot/mount-source.js';
import { openCacheMount, type CacheMountSync, type OpenCacheMount } from '../store/cache-mounts.js';
import { makeTmpDir } from '../store/graph.js';
import type { StoreLayout } from '../store/layout.js';

/**
 * What the mounts need from the build (the scheduler passes it; this module knows nothing else
 * of the build, so it imports neither build.ts nor layer-step.ts).
 */
export interface MountEnv {
  layout: StoreLayout;
  file: string;
  escape: string;
  context: { dir: string; isIgnored: (rel: string) => boolean };
  sandbox?: SandboxOptions;
  /** Build secrets by id (`--secret`). */
  secrets?: ReadonlyMap<string, Buffer>;
  /** SSH agent sockets by id (`--ssh`). */
  ssh?: ReadonlyMap<string, string>;
  noCache?: boolean;
  tenant?: string;
  /** Shares cache mounts beyond this store (the farm's workers). */
  cacheMountSync?: CacheMountSync;
  warn: (text: string) => void;
  signal?: AbortSignal;
  /** A stage (by name or index) or image: its layer folders and id. */
  resolveFrom: (from: string, line: number) => Promise<{ lowerDirs: string[]; id: string }>;
}

/** The build options the mounts read (a structural slice of BuildOptions). */
interface MountOptions {
  layout: StoreLayout;
  sandbox?: SandboxOptions;
  secrets?: ReadonlyMap<string, Buffer>;
  ssh?: ReadonlyMap<string, string>;
  noCache?: boolean;
  tenant?: string;
  cacheMountSync?: CacheMountSync;
  signal?: AbortSignal;
  onEvent: (e: { type: 'warning'; text: string }) => void;
}

/** A MountEnv from a build's options and what the scheduler knows of the build. */
export function mountEnv(o: MountOptions, b: Pick<MountEnv, 'file' | 'escape' | 'context' | 'resolveFrom'>): MountEnv {
  return {
    ...b, layout: o.layout, ...(o.sandbox ? { sandbox: o.sandbox } : {}), ...(o.secrets ? { secrets: o.secrets } : {}),
    ...(o.ssh ? { ssh: o.ssh } : {}), noCache: o.noCache ?? false, tenant: o.tenant ?? 'default', ...(o.cacheMountSync ? { cacheMountSync: o.cacheMountSync } : {}), ...(o.signal ? { signal: o.signal } : {}),
    warn: (text) => o.onEvent({ type: 'warning', text }),
  };
}

/** Runs `fn` with the mounts made, and releases them afterwards whatever happens. */
export async function withMounts<T>(mounts: PreparedMounts, fn: (opened: OpenedMounts) => Promise<T>): Promise<T> {
  const opened = await mounts.open();
  try {
    return await fn(opened);
  } finally {
    await opened.release();
  }
}

/** The mounts of one RUN: what goes into its cache key, and how to make them for a run. */
export interface PreparedMounts {
  /** Empty without mounts, so a RUN without them keeps its key. */
  keyExtra: unknown[];
  open(): Promise<OpenedMounts>;
}

/** Mounts made for one run: the container's mounts, extra environment, and the undo. */
export interface OpenedMounts { mounts: ContainerMount[]; env: string[]; release(): Promise<void> }

/** Where a bind (or a cache mount's seed) reads from: a stage or image's layers, or the context. */
interface ResolvedSource { lowerDirs?: string[]; id: string }

/** A private folder on a tmpfs (never the store's disk) for secret files and agent sockets. */
async function ephemeralDir(run: MountEnv): Promise<string> {
  const base = await fs.stat('/dev/shm').then((s) => (s.isDirectory() ? '/dev/shm' : undefined), () => undefined);
  if (base === undefined) return makeTmpDir(run.layout, 'session');
  const dir = path.join(base, `slipway-${process.pid}-${crypto.randomBytes(6).toString('hex')}`);
  await fs.mkdir(dir, { mode: 0o700 });
  return dir;
}

async function resolveFrom(run: MountEnv, from: string | undefined, line: number): Promise<ResolvedSource> {
  if (from === undefined) return { id: 'context' };
  return run.resolveFrom(from, line);
}

/** The cache-key part of one mount: its options and sources, no secret value and no cache content. */
async function keyOf(run: MountEnv, m: RunMount, src: ResolvedSource | undefined): Promise<unknown> {
  switch (m.type) {
    case 'bind': {
      if (src?.lowerDirs !== undefined) return { ...m, from: src.id };
      const { tree, rel } = await contextTree(run.context.dir, m.source, run.context.isIgnored);
      return { ...m, from: 'context', content: await digestTree(tree, rel) };
    }
    case 'cache': return { ...m, ...(src ? { from: src.id } : {}) };
    default: return { ...m };
  }
}

/** Parses the step's mounts (expanded with the variables in scope) and their key. */
export async function prepareRunMounts(run: MountEnv, state: StageState, step: RunStep): Promise<PreparedMounts> {
  const file = run.file;
  const fail = (d: string) => dockerfileError('ERR_DOCKERFILE_SYNTAX', file, step.line, d);
  const workdir = state.config.WorkingDir || '/';
  const mounts: RunMount[] = [];
  for (const raw of step.mounts) {
    const spec = expandAt(file, step.line, raw, lookupIn(state), run.escape);
    mounts.push(parseRunMount(spec, workdir, mounts.filter((m) => m.type === 'ssh').length, fail));
  }
  const targets = new Set<string>();
  for (const m of mounts) {
    const t = m.target;
    if (t === undefined) continue;
    if (targets.has(t)) throw fail(`RUN --mount: two mounts at ${t}`);
    targets.add(t);
    if (m.type === 'secret' && !run.secrets?.has(m.id) && m.required) throw fail(`RUN --mount=type=secret: secret ${m.id} not found (give it with --secret id=${m.id},src=FILE)`);
    if (m.type === 'ssh' && !run.ssh?.has(m.id) && m.required) throw fail(`RUN --mount=type=ssh: no SSH agent "${m.id}" was given (--ssh ${m.id}=SOCKET)`);
  }
  const sources = new Map<RunMount, ResolvedSource>();
  const keyExtra: unknown[] = [];
  for (const m of mounts) {
    const src = m.type === 'bind' || (m.type === 'cache' && m.from !== undefined) ? await resolveFrom(run, m.from, step.line) : undefined;
    if (src) sources.set(m, src);
    keyExtra.push(await keyOf(run, m, src));
  }
  return { keyExtra, open: () => openMounts(run, step, mounts, sources) };
}

/** What one run's mounts hold on to, undone in reverse by `release`. */
interface Held { caches: OpenCacheMount[]; agents: AgentForward[]; dirs: string[] }

async function openMounts(run: MountEnv, step: RunStep, mounts: RunMount[], sources: Map<RunMount, ResolvedSource>): Promise<OpenedMounts> {
  const held: Held = { caches: [], agents: [], dirs: [] };
  const out: ContainerMount[] = [];
  const env: string[] = [];
  const release = async () => {
    for (const a of held.agents) await a.close();
    for (const c of held.caches) await c.release();
    for (const d of held.dirs) await fs.rm(d, { recursive: true, force: true });
  };
  try {
    let session: string | undefined;
    const sessionDir = async () => {
      if (session === undefined) held.dirs.push((session = await ephemeralDir(run)));
      return session;
    };
    for (const [i, m] of mounts.entries()) {
      const made = await openOne(run, step, m, i, { held, sessionDir, src: sources.get(m) });
      if (made.mount) out.push(made.mount);
      env.push(...made.env);
    }
    return { mounts: out, env, release };
  } catch (e) {
    await release();
    throw e;
  }
}

interface OpenContext { held: Held; sessionDir: () => Promise<string>; src: ResolvedSource | undefined }

/** Makes one mount; a secret or agent that was not given and is not required is left out. */
async function openOne(run: MountEnv, step: RunStep, m: RunMount, i: number, c: OpenContext): Promise<{ mount?: ContainerMount; env: string[] }> {
  const ids = mappingFor(run.sandbox);
  switch (m.type) {
    case 'tmpfs': return { mount: { kind: 'tmpfs', target: m.target, ...(m.size !== undefined ? { size: m.size } : {}) }, env: [] };
    case 'cache': return { mount: { kind: 'bind', target: m.target, source: await openCache(run, step, m, c), readonly: m.readonly, file: false }, env: [] };
    case 'bind': return { mount: await openBind(run, step, m, c), env: [] };
    case 'secret': {
      const value = run.secrets?.get(m.id);
      if (value === undefined) return { env: [] };
      const env = m.env !== undefined ? [`${m.env}=${value.toString('utf8')}`] : [];
      if (m.target === undefined) return { env };
      const f = path.join(await c.sessionDir(), `secret-${i}`);
      await fs.writeFile(f, value, { mode: 0o600 });
      const o = hostOwner(ids, m.uid, m.gid);
      await fs.chown(f, o.uid, o.gid);
      await fs.chmod(f, m.mode);
      return { mount: { kind: 'bind', target: m.target, source: f, readonly: true, file: true }, env };
    }
    case 'ssh': {
      const agent = run.ssh?.get(m.id);
      if (agent === undefined) return { env: [] };
      const fwd = await forwardAgent(path.join(await c.sessionDir(), `ssh-${i}.sock`), agent, { ...hostOwner(ids, m.uid, m.gid), mode: m.mode });
      c.held.agents.push(fwd);
      // As BuildKit: the first ssh mount is the step's SSH_AUTH_SOCK.
      const first = c.held.agents.length === 1;
      return { mount: { kind: 'bind', target: m.target, source: fwd.path, readonly: false, file: true }, env: first ? [`SSH_AUTH_SOCK=${m.target}`] : [] };
    }
  }
}

/** Copies `source` of a stage, image or the context to `dest`, with the owners the step sees. */
async function copySource(run: MountEnv, step: RunStep, source: string, src: ResolvedSource | undefined, dest: string): Promise<boolean> {
  const ids = mappingFor(run.sandbox);
  const { tree, rel } = src?.lowerDirs !== undefined
    ? layerTree(src.lowerDirs, source)
    : await contextTree(run.context.dir, source, run.context.isIgnored);
  // Context files are root's in the step (as BuildKit's context copy makes them).
  const shift = src?.lowerDirs !== undefined ? (u: number, g: number) => hostOwner(ids, u, g) : () => hostOwner(ids, 0, 0);
  const found = await copyTree(tree, rel, dest, { shift });
  if (!found) throw dockerfileError('ERR_FILE_NOT_FOUND', run.file, step.line, `RUN --mount: source ${source} not found in ${src?.lowerDirs !== undefined ? `"${src.id.slice(0, 12)}"` : 'the build context'}`);
  return found;
}

async function openBind(run: MountEnv, step: RunStep, m: BindMount, c: OpenContext): Promise<ContainerMount> {
  const dir = await makeTmpDir(run.layout, 'bind');
  c.held.dirs.push(dir);
  const dest = path.join(dir, 'src');
  await copySource(run, step, m.source, c.src, dest);
  const file = !(await fs.lstat(dest)).isDirectory();
  return { kind: 'bind', target: m.target, source: dest, readonly: !m.rw, file };
}

/**
 * The folder of a cache mount. With --no-cache it is a new, empty one that is thrown away
 * afterwards (as BuildKit starts cache mounts empty); otherwise the store's, per tenant and id.
 */
async function openCache(run: MountEnv, step: RunStep, m: CacheMount, c: OpenContext): Promise<string> {
  const o = hostOwner(mappingFor(run.sandbox), m.uid, m.gid);
  const owner = { ...o, mode: m.mode };
  const seed = m.from !== undefined ? (dest: string) => copySource(run, step, m.source, c.src, dest).then(() => undefined) : undefined;
  if (run.noCache) {
    const dir = await makeTmpDir(run.layout, 'cache-mount');
    c.held.dirs.push(dir);
    const data = path.join(dir, 'data');
    if (seed) await seed(data);
    else await fs.mkdir(data);
    await fs.chown(data, owner.uid, owner.gid);
    await fs.chmod(data, owner.mode);
    return data;
  }
  const open = await openCacheMount(run.layout, {
    tenant: run.tenant ?? 'default', id: m.id, sharing: m.sharing, owner, ...(seed ? { seed } : {}), readonly: m.readonly,
    ...(run.cacheMountSync ? { sync: run.cacheMountSync } : {}),
    onWait: (pid) => run.warn(`RUN --mount=type=cache,id=${m.id},sharing=${m.sharing}: waiting for process ${pid}, which uses it`),
    ...(run.signal ? { signal: run.signal } : {}),
  });
  c.held.caches.push(open);
  return open.dir;
}

/** `RUN --security=insecure` needs the operator's security.insecure entitlement. */
export function checkSecurity(file: string, step: RunStep, allowed: boolean | undefined): boolean {
  if (step.security !== 'insecure') return false;
  if (!allowed) {
    throw dockerfileError('ERR_DOCKERFILE_SYNTAX', file, step.line, 'RUN --security=insecure is not allowed: it needs the security.insecure entitlement (--allow security.insecure)');
  }
  return true;
}
