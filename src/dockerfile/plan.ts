import { dockerfileError, SlipwayError } from '../errors.js';
import { expandWord, expandWords } from './expand.js';
import { checkPlatform, platformArgs } from './platform.js';
import type { ArgStep, Dockerfile, FromStep, Step } from './step.js';

/** Docker's predefined ARGs: usable without an ARG line, never recorded in history. */
export const PREDEFINED_ARGS = new Set([
  'HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy',
]);

/** One build stage: its FROM, the base it names (expanded), and its steps in order. */
export interface PlannedStage {
  index: number;
  name: string | undefined;
  from: FromStep;
  /** The FROM argument after expansion with the global ARGs. */
  base: string;
  /** When the base is an earlier stage, its index. */
  baseStage: number | undefined;
  steps: Step[];
  /** `Step N/M` number of the FROM; step i of `steps` is firstNumber + 1 + i. */
  firstNumber: number;
}

/** What a build does, computed without touching a file. */
export interface Plan {
  file: string;
  globalArgs: ArgStep[];
  stages: PlannedStage[];
  /** M in `Step N/M`. */
  total: number;
  /** Global ARG values after `--build-arg` overrides (undefined: declared without value). */
  globalArgValues: Map<string, string | undefined>;
  buildArgs: Record<string, string>;
}

export interface PlanOptions {
  buildArgs?: Record<string, string>;
  target?: string | undefined;
}

/**
 * Splits a Dockerfile into stages, expands FROM lines with the global ARGs and resolves
 * `--target`. As Docker's legacy builder does, every stage up to the target is built (and
 * numbered), stages after it are dropped.
 */
export function planBuild(df: Dockerfile, opts: PlanOptions = {}): Plan {
  const buildArgs = opts.buildArgs ?? {};
  const globalArgs: ArgStep[] = [];
  const stages: PlannedStage[] = [];
  // BuildKit's automatic platform ARGs are global values from the start (--build-arg wins).
  const auto = platformArgs();
  const globalArgValues = new Map<string, string | undefined>(Object.entries(auto).map(([k, v]) => [k, buildArgs[k] ?? v]));
  const lookupGlobal = (n: string) => globalArgValues.get(n) ?? (PREDEFINED_ARGS.has(n) ? buildArgs[n] : undefined);
  let n = 0;
  for (const step of df.steps) {
    if (step.kind === 'FROM') {
      const base = expandAt(df.file, step.line, step.image, lookupGlobal);
      if (base === '') throw dockerfileError('ERR_DOCKERFILE_SYNTAX', df.file, step.line, `base name (${step.image}) should not be blank`);
      if (step.platform !== undefined) {
        checkPlatform(expandAt(df.file, step.line, step.platform, lookupGlobal), { file: df.file, line: step.line, flag: `FROM --platform=${step.platform}` });
      }
      const lower = base.toLowerCase();
      const prev = stages.find((s) => s.name !== undefined && s.name === lower);
      if (step.stageName !== undefined && stages.some((s) => s.name === step.stageName)) {
        throw dockerfileError('ERR_DOCKERFILE_SYNTAX', df.file, step.line, `duplicate name ${step.stageName}`);
      }
      stages.push({ index: stages.length, name: step.stageName, from: step, base, baseStage: prev?.index, steps: [], firstNumber: ++n });
      continue;
    }
    const cur = stages[stages.length - 1];
    if (!cur) {
      if (step.kind !== 'ARG') {
        throw dockerfileError('ERR_DOCKERFILE_NO_STAGE', df.file, step.line, 'no build stage in current context');
      }
      globalArgs.push(step);
      n++;
      for (const a of step.args) {
        // A bare `ARG TARGETARCH` keeps the automatic value; a default replaces it.
        const bare = a.name in auto ? globalArgValues.get(a.name) : undefined;
        const v = a.name in buildArgs ? buildArgs[a.name] : a.value === undefined ? bare : expandAt(df.file, step.line, a.value, lookupGlobal);
        globalArgValues.set(a.name, v);
      }
      continue;
    }
    cur.steps.push(step);
    n++;
  }
  if (stages.length === 0) throw new SlipwayError('ERR_DOCKERFILE_NO_STAGE', `${df.file}: no build stage in current context`);
  for (const step of df.steps) checkExpansions(df, step);
  let kept = stages;
  if (opts.target !== undefined) {
    const t = opts.target.toLowerCase();
    const i = stages.findIndex((s) => s.name === t);
    if (i < 0) throw new SlipwayError('ERR_UNKNOWN_STAGE', `failed to reach build target ${opts.target} in Dockerfile`);
    kept = stages.slice(0, i + 1);
  }
  const last = kept[kept.length - 1]!;
  const total = last.firstNumber + last.steps.length;
  return { file: df.file, globalArgs, stages: kept, total, globalArgValues, buildArgs };
}

/** Runs an expansion, turning its error into a Dockerfile error with the line. */
function located<T>(file: string, line: number, expand: () => T): T {
  try {
    return expand();
  } catch (e) {
    if (e instanceof SlipwayError) throw dockerfileError(e.code, file, line, e.message);
    throw e;
  }
}

/** Expands one word, turning an expansion error into a Dockerfile error with the line. */
export function expandAt(file: string, line: number, word: string, lookup: (n: string) => string | undefined, escape = '\\'): string {
  return located(file, line, () => expandWord(word, lookup, escape));
}

/** `expandAt`, split into words as Docker's ProcessWords splits them (empty words dropped). */
export function expandWordsAt(file: string, line: number, word: string, lookup: (n: string) => string | undefined, escape = '\\'): string[] {
  return located(file, line, () => expandWords(word, lookup, escape));
}

/** The words of a step that the builder expands (Docker expands in these instructions only). */
function expandedWords(step: Step): string[] {
  switch (step.kind) {
    case 'ENV':
    case 'LABEL': return step.pairs.flat();
    case 'EXPOSE': return step.ports;
    case 'VOLUME': return step.paths;
    case 'USER': return [step.user];
    case 'STOPSIGNAL': return [step.signal];
    case 'WORKDIR': return [step.path];
    case 'ARG': return step.args.flatMap((a) => (a.value === undefined ? [] : [a.value]));
    case 'COPY':
    case 'ADD': return [...step.sources, step.dest, ...(step.chown !== undefined ? [step.chown] : []), ...(step.from !== undefined ? [step.from] : [])];
    default: return [];
  }
}

/**
 * Syntax errors in variable references (`${B`) do not depend on values, so they are found
 * before the build starts: a bad Dockerfile never leaves half its steps in the store.
 */
function checkExpansions(df: Dockerfile, step: Step): void {
  for (const w of expandedWords(step)) expandAt(df.file, step.line, w, () => 'x', df.escape);
}
