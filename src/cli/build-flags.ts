/**
 * The `docker build` flags pipelines pass, parsed with Docker's syntax and checks before
 * anything touches the store: `--label`, `--iidfile`, `--platform`, `--cache-from`, `--output`,
 * `--pull`, `--add-host`, `--ulimit`, `--shm-size`, `--progress`.
 */
import path from 'node:path';
import { SlipwayError } from '../errors.js';
import { checkPlatform } from '../dockerfile/platform.js';
import { parseBytes } from '../sandbox/limits.js';
import { parseAddHost, parseUlimit, type ExtraHost, type Ulimit } from '../sandbox/container-flags.js';

/** `util.parseArgs` options for these flags. */
export const BUILD_EXTRA_FLAGS = {
  label: { type: 'string', multiple: true },
  iidfile: { type: 'string' },
  platform: { type: 'string' },
  'cache-from': { type: 'string', multiple: true },
  output: { type: 'string', short: 'o', multiple: true },
  pull: { type: 'boolean' },
  'add-host': { type: 'string', multiple: true },
  ulimit: { type: 'string', multiple: true },
  'shm-size': { type: 'string' },
  progress: { type: 'string' },
} as const;

/** Where `--output` puts the final filesystem. */
export type BuildOutput = { type: 'local'; dest: string } | { type: 'tar'; dest: string };

/** The parsed flags. */
export interface BuildExtras {
  labels: Record<string, string>;
  iidfile?: string;
  cacheFrom: string[];
  outputs: BuildOutput[];
  pull: boolean;
  extraHosts: ExtraHost[];
  ulimits: Ulimit[];
  shmSize?: number;
}

type Values = Partial<{ label: string[]; iidfile: string; platform: string; 'cache-from': string[]; output: string[]; pull: boolean; 'add-host': string[]; ulimit: string[]; 'shm-size': string; progress: string }>;

function usage(msg: string): SlipwayError {
  return new SlipwayError('ERR_USAGE', msg);
}

/** `--label K=V` (a bare `K` is an empty value, as docker's ListOpts gives it). */
function parseLabels(list: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of list) {
    const eq = kv.indexOf('=');
    const k = eq < 0 ? kv : kv.slice(0, eq);
    if (k === '') throw usage(`invalid argument "${kv}" for "--label" flag: empty key`);
    out[k] = eq < 0 ? '' : kv.slice(eq + 1);
  }
  return out;
}

/** `--output type=local,dest=DIR`, `type=tar,dest=FILE`, or a bare path (local), as buildx reads it. */
export function parseOutput(v: string): BuildOutput {
  if (!v.includes('=')) return { type: 'local', dest: path.resolve(v) };
  const fields: Record<string, string> = {};
  for (const part of v.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw usage(`invalid argument "${v}" for "--output" flag: invalid value ${part}`);
    fields[part.slice(0, eq).trim()] = part.slice(eq + 1);
  }
  const { type, dest, ...rest } = fields;
  if (type !== 'local' && type !== 'tar') {
    throw usage(`--output type=${type ?? ''} is not supported: type=local,dest=DIR or type=tar,dest=FILE (images are stored with -t; push them with slipway push)`);
  }
  const extra = Object.keys(rest);
  if (extra.length > 0) throw usage(`--output: unsupported attribute ${extra[0]} for type=${type}`);
  if (!dest) throw usage(`--output type=${type}: dest= is required (dest=- for stdout is not supported)`);
  if (dest === '-') throw usage(`--output type=${type},dest=-: writing to stdout is not supported; name a ${type === 'tar' ? 'file' : 'folder'}`);
  return { type, dest: path.resolve(dest) };
}

/** Parses and checks every flag of BUILD_EXTRA_FLAGS. */
export function buildExtras(v: Values): BuildExtras {
  if (v.platform !== undefined) checkPlatform(v.platform);
  // --progress is checked by build-progress.ts (its views).
  const out: BuildExtras = {
    labels: parseLabels(v.label ?? []),
    cacheFrom: (v['cache-from'] ?? []).filter((s) => s !== ''),
    outputs: (v.output ?? []).map(parseOutput),
    pull: v.pull ?? false,
    extraHosts: (v['add-host'] ?? []).map(parseAddHost),
    ulimits: (v.ulimit ?? []).map(parseUlimit),
  };
  if (v.iidfile !== undefined) {
    if (v.iidfile === '') throw usage('flag needs an argument: --iidfile');
    out.iidfile = path.resolve(v.iidfile);
  }
  if (v['shm-size'] !== undefined) {
    out.shmSize = parseBytes(v['shm-size'], 'shm-size');
    if (out.shmSize <= 0) throw usage(`invalid argument "${v['shm-size']}" for "--shm-size" flag: must be greater than 0`);
  }
  const names = new Set<string>();
  for (const u of out.ulimits) {
    if (names.has(u.name)) throw usage(`invalid argument for "--ulimit" flag: ${u.name} given twice`);
    names.add(u.name);
  }
  return out;
}
