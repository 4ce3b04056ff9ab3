import path from 'node:path';
import { SlipwayError, dockerfileError } from '../errors.js';
import { cloneConfig, envGet, envSet, type ContainerConfigJson, type HealthcheckJson } from '../image-config.js';
import { expandAt, expandWordsAt, PREDEFINED_ARGS } from './plan.js';
import { goDuration, goList, goQuote, goQuoteList, goQuoteRune } from './go-format.js';
import type { Step } from './step.js';

/** The evolving state of one stage while it builds: the run config and the stage's ARGs. */
export interface StageState {
  config: ContainerConfigJson;
  /** ARGs declared in this stage, with their effective values (undefined: no value). */
  args: Map<string, string | undefined>;
  /** CMD was set in this stage (ENTRYPOINT then keeps it). */
  cmdSet: boolean;
  buildArgs: Record<string, string>;
  /** Global ARG values (before the first FROM): a stage's bare `ARG NAME` takes them. */
  globalArgs: Map<string, string | undefined>;
  file: string;
  escape: string;
}

/** Metadata-only instructions: handled in memory, producing an empty layer. */
export type MetadataKind = Exclude<Step['kind'], 'FROM' | 'RUN' | 'COPY' | 'ADD' | 'WORKDIR'>;

/** Variable lookup for expansion: ENV beats ARG; predefined proxy ARGs come from --build-arg. */
export function lookupIn(state: StageState): (name: string) => string | undefined {
  return (name) => {
    const env = envGet(state.config.Env, name);
    if (env !== undefined) return env;
    if (state.args.has(name)) return state.args.get(name);
    if (PREDEFINED_ARGS.has(name)) return state.buildArgs[name];
    return undefined;
  };
}

/** The shell that prefixes history strings and shell-form commands. */
export function shellOf(config: ContainerConfigJson): string[] {
  return config.Shell && config.Shell.length > 0 ? config.Shell : ['/bin/sh', '-c'];
}

/** `[shell..., '#(nop) ', text]`: Docker's container_config.Cmd for a metadata step. */
export function nopCmd(config: ContainerConfigJson, text: string): string[] {
  return [...shellOf(config), '#(nop) ', text];
}

/**
 * The `|N K=V ...` build args a RUN sees and records: ARGs of this stage that have a value and
 * that no ENV shadows, sorted as Docker sorts them.
 */
export function runBuildArgs(state: StageState): string[] {
  const out: string[] = [];
  for (const [k, v] of state.args) {
    if (v === undefined) continue;
    if (envGet(state.config.Env, k) !== undefined) continue;
    out.push(`${k}=${v}`);
  }
  return out.sort();
}

/** Predefined proxy ARGs given with --build-arg: they reach a RUN's environment but are never recorded. */
export function predefinedRunArgs(state: StageState): string[] {
  const out: string[] = [];
  for (const k of PREDEFINED_ARGS) {
    const v = state.buildArgs[k];
    if (!state.args.has(k) && v !== undefined && envGet(state.config.Env, k) === undefined) out.push(`${k}=${v}`);
  }
  return out.sort();
}

type Handler<K extends MetadataKind> = (step: Extract<Step, { kind: K }>, state: StageState) => { config: ContainerConfigJson; text: string };

function ex(state: StageState, line: number, word: string): string {
  return expandAt(state.file, line, word, lookupIn(state), state.escape);
}

/**
 * The working directory a WORKDIR sets, as Docker's normalizeWorkdir: an absolute path as written
 * (`/app/` and `/a/../b` stay so in the config and history; the folder made and a process's cwd
 * are its `cleanPath` (image-config.ts)), a relative one joined to the current one and cleaned.
 */
export function workdirOf(current: string | null | undefined, requested: string): string {
  return requested.startsWith('/') ? requested : path.posix.join('/', current || '/', requested);
}

/** A map as Go's encoding/json writes it, keys in byte order: the config then reads as Docker's. */
function goMap<T>(m: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(m).sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b))));
}

function parsePorts(spec: string, file: string, line: number): string[] {
  const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(spec);
  if (!m) throw dockerfileError('ERR_DOCKERFILE_SYNTAX', file, line, `Invalid containerPort: ${spec}`);
  const lo = Number(m[1]);
  const hi = m[2] !== undefined ? Number(m[2]) : lo;
  const proto = (m[3] ?? 'tcp').toLowerCase();
  if (hi < lo || hi > 65535) throw dockerfileError('ERR_DOCKERFILE_SYNTAX', file, line, `Invalid containerPort: ${spec}`);
  const out: string[] = [];
  for (let p = lo; p <= hi; p++) out.push(`${p}/${proto}`);
  return out;
}

const SIGNALS = new Set(['ABRT', 'ALRM', 'BUS', 'CHLD', 'CLD', 'CONT', 'FPE', 'HUP', 'ILL', 'INT', 'IO', 'IOT', 'KILL', 'PIPE', 'POLL', 'PROF', 'PWR', 'QUIT', 'SEGV', 'STKFLT', 'STOP', 'SYS', 'TERM', 'TRAP', 'TSTP', 'TTIN', 'TTOU', 'URG', 'USR1', 'USR2', 'VTALRM', 'WINCH', 'XCPU', 'XFSZ']);

/**
 * One handler per metadata instruction; the mapped type makes the compiler reject a missing
 * one. Each returns the new config and the history text after `#(nop) `.
 */
const HANDLERS: { [K in MetadataKind]: Handler<K> } = {
  ENV(step, state) {
    const lookup = lookupIn(state);
    let env = state.config.Env ? [...state.config.Env] : [];
    const parts: string[] = [];
    for (const [k, v] of step.pairs) {
      const key = expandAt(state.file, step.line, k, lookup, state.escape);
      const val = expandAt(state.file, step.line, v, lookup, state.escape);
      env = envSet(env, key, val);
      parts.push(`${key}=${val}`);
    }
    return { config: { ...cloneConfig(state.config), Env: env }, text: `ENV ${parts.join(' ')}` };
  },
  LABEL(step, state) {
    const labels = { ...(state.config.Labels ?? {}) };
    const parts: string[] = [];
    for (const [k, v] of step.pairs) {
      const key = ex(state, step.line, k);
      const val = ex(state, step.line, v);
      labels[key] = val;
      parts.push(`${key}=${val}`);
    }
    return { config: { ...cloneConfig(state.config), Labels: goMap(labels) }, text: `LABEL ${parts.join(' ')}` };
  },
  MAINTAINER(step, state) {
    return { config: cloneConfig(state.config), text: `MAINTAINER ${step.name}` };
  },
  EXPOSE(step, state) {
    // Docker's parser sorts the words as written; each is then expanded into words ($P with
    // P="80 443" is two ports), in that order: `EXPOSE 80 $P` is `EXPOSE $P 80` expanded.
    const words = [...step.ports].sort().flatMap((p) => expandWordsAt(state.file, step.line, p, lookupIn(state), state.escape));
    const exposed = { ...(state.config.ExposedPorts ?? {}) };
    for (const w of words) for (const p of parsePorts(w, state.file, step.line)) exposed[p] = {};
    return { config: { ...cloneConfig(state.config), ExposedPorts: goMap(exposed) }, text: `EXPOSE ${words.join(' ')}` };
  },
  VOLUME(step, state) {
    const paths = step.paths.map((p) => ex(state, step.line, p));
    const volumes = { ...(state.config.Volumes ?? {}) };
    for (const p of paths) {
      if (p.trim() === '') throw dockerfileError('ERR_DOCKERFILE_SYNTAX', state.file, step.line, 'VOLUME specified can not be an empty string');
      volumes[p] = {};
    }
    return { config: { ...cloneConfig(state.config), Volumes: goMap(volumes) }, text: `VOLUME ${goList(paths)}` };
  },
  USER(step, state) {
    const user = ex(state, step.line, step.user);
    return { config: { ...cloneConfig(state.config), User: user }, text: `USER ${user}` };
  },
  STOPSIGNAL(step, state) {
    const sig = ex(state, step.line, step.signal);
    const name = sig.toUpperCase().replace(/^SIG/, '');
    if (!/^\d+$/.test(sig) && !SIGNALS.has(name) && !/^RTMIN(\+\d+)?$|^RTMAX(-\d+)?$/.test(name)) {
      throw dockerfileError('ERR_DOCKERFILE_SYNTAX', state.file, step.line, `Invalid signal: ${sig}`);
    }
    return { config: { ...cloneConfig(state.config), StopSignal: sig }, text: `STOPSIGNAL ${sig}` };
  },
  CMD(step, state) {
    const cmd = step.form === 'exec' ? step.exec : [...shellOf(state.config), step.shell];
    state.cmdSet = true;
    return { config: { ...cloneConfig(state.config), Cmd: cmd }, text: `CMD ${goQuoteList(cmd)}` };
  },
  ENTRYPOINT(step, state) {
    const ep = step.form === 'exec' ? step.exec : [...shellOf(state.config), step.shell];
    const config = { ...cloneConfig(state.config), Entrypoint: ep };
    // An ENTRYPOINT resets a CMD inherited from the base image, not one set in this stage.
    if (!state.cmdSet) config.Cmd = null;
    return { config, text: `ENTRYPOINT ${goQuoteList(ep)}` };
  },
  SHELL(step, state) {
    return { config: { ...cloneConfig(state.config), Shell: step.shell }, text: `SHELL ${goList(step.shell)}` };
  },
  HEALTHCHECK(step, state) {
    const config = cloneConfig(state.config);
    // A new HealthConfig (NONE takes no flags): its text has only what this instruction says.
    const hc: HealthcheckJson = { Test: step.test };
    if (step.interval) hc.Interval = step.interval;
    if (step.timeout) hc.Timeout = step.timeout;
    if (step.startPeriod) hc.StartPeriod = step.startPeriod;
    if (step.retries) hc.Retries = step.retries;
    const text = `HEALTHCHECK &{${goQuoteList(hc.Test ?? [])} ${goQuote(goDuration(hc.Interval ?? 0))} ${goQuote(goDuration(hc.Timeout ?? 0))} ${goQuote(goDuration(hc.StartPeriod ?? 0))} ${goQuoteRune(hc.Retries ?? 0)}}`;
    // Then the legacy builder creates the step's container, and the daemon merges the parent
    // image's config into the new one (daemon/commit.go merge()): each field of the health check
    // left zero takes the parent's. The committed config shares that HealthConfig, so the image
    // keeps an earlier interval, timeout, start period and retries, even under NONE (checked
    // with Docker 20.10.24); the history text above was made before.
    const parent = state.config.Healthcheck;
    for (const f of ['Interval', 'Timeout', 'StartPeriod', 'Retries'] as const) if (!hc[f] && parent?.[f]) hc[f] = parent[f];
    config.Healthcheck = hc;
    return { config, text };
  },
  ONBUILD(step, state) {
    const config = cloneConfig(state.config);
    config.OnBuild = [...(config.OnBuild ?? []), step.trigger];
    return { config, text: `ONBUILD ${step.trigger}` };
  },
  ARG(step, state) {
    const lookup = lookupIn(state);
    const parts: string[] = [];
    // Docker expands the whole instruction before dispatching it: every default (whether or not
    // --build-arg overrides it) against the ARGs before this line, and the history shows them so.
    const defaults = step.args.map((a) => (a.value !== undefined ? expandAt(state.file, step.line, a.value, lookup, state.escape) : undefined));
    for (const [i, a] of step.args.entries()) {
      const dflt = defaults[i];
      let value: string | undefined;
      if (a.name in state.buildArgs) value = state.buildArgs[a.name];
      else if (dflt !== undefined) value = dflt;
      else value = state.globalArgs.has(a.name) ? state.globalArgs.get(a.name) : state.args.get(a.name);
      state.args.set(a.name, value);
      parts.push(dflt === undefined ? a.name : `${a.name}=${dflt}`);
    }
    return { config: cloneConfig(state.config), text: `ARG ${parts.join(' ')}` };
  },
};

/** Applies a metadata step to the stage: returns the new config and container_config Cmd. */
export function applyMetadata(step: Extract<Step, { kind: MetadataKind }>, state: StageState): { config: ContainerConfigJson; cmd: string[] } {
  const handler = HANDLERS[step.kind] as Handler<MetadataKind>;
  const { config, text } = handler(step as never, state);
  return { config, cmd: nopCmd(config, text) };
}

/** True for instructions handled by `applyMetadata`. */
export function isMetadataStep(step: Step): step is Extract<Step, { kind: MetadataKind }> {
  return step.kind !== 'FROM' && step.kind !== 'RUN' && step.kind !== 'COPY' && step.kind !== 'ADD' && step.kind !== 'WORKDIR';
}

export { SlipwayError };
