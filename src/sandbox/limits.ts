/**
 * The sandbox flags shared by `build`, `run`, `serve` and `worker`, with Docker's names and
 * units: `--memory 512m`, `--memory-swap`, `--cpu-shares`, `--cpu-period`, `--cpu-quota`,
 * `--cpuset-cpus`, plus `--pids-limit` and `--step-timeout`, `--runtime` and `--userns`. On
 * `serve` and `worker` the same flags are the defaults for every build and the ceilings that a
 * build's own values may not exceed.
 */
import { SlipwayError } from '../errors.js';
import type { StepLimits } from './cgroups.js';
import type { NetworkMode } from './oci-spec.js';
import type { Limit, SandboxOptions } from './container.js';
import { DEFAULT_PIDS_LIMIT } from './defaults.js';

/** `util.parseArgs` options for the sandbox flags. */
export const SANDBOX_FLAGS = {
  memory: { type: 'string', short: 'm' },
  'memory-swap': { type: 'string' },
  'cpu-shares': { type: 'string', short: 'c' },
  'cpu-period': { type: 'string' },
  'cpu-quota': { type: 'string' },
  'cpuset-cpus': { type: 'string' },
  'pids-limit': { type: 'string' },
  'step-timeout': { type: 'string' },
  runtime: { type: 'string' },
  userns: { type: 'string' },
} as const;

/** The values `util.parseArgs` gives for SANDBOX_FLAGS. */
export type SandboxFlagValues = Partial<Record<keyof typeof SANDBOX_FLAGS, string>>;

function usage(msg: string): SlipwayError {
  return new SlipwayError('ERR_INVALID_OPTION', msg);
}

const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** Docker's byte sizes: `512m`, `1g`, `1.5G`, `64mb`, `1048576`. */
export function parseBytes(v: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)b?$/i.exec(v.trim());
  if (!m) throw usage(`invalid argument "${v}" for "--${flag}" flag: invalid size: '${v}'`);
  return Math.floor(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
}

/** Durations: `90s`, `5m`, `1h30m`, `1500ms`; a bare number is seconds. */
export function parseDuration(v: string, flag: string): number {
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let total = 0;
  let consumed = 0;
  for (const m of v.matchAll(re)) {
    total += Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
    consumed += m[0].length;
  }
  if (consumed !== v.length || v.length === 0) throw usage(`invalid argument "${v}" for "--${flag}" flag: invalid duration`);
  return Math.round(total);
}

function parseInteger(v: string, flag: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^-?\d+$/.test(v)) throw usage(`invalid argument "${v}" for "--${flag}" flag: not an integer`);
  const n = Number(v);
  if (n < min || n > max) throw usage(`invalid argument "${v}" for "--${flag}" flag: must be between ${min} and ${max}`);
  return n;
}

/** Sizes as Docker prints them in messages: 64MiB, 1.5GiB. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${Number.isInteger(v) ? v : v.toFixed(1)}${units[i]}`;
}

function formatDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** The limits from flag values, with Docker's rules (swap defaults to twice the memory). */
function limitsFrom(v: SandboxFlagValues): StepLimits {
  const l: StepLimits = {};
  if (v.memory !== undefined) {
    l.memory = parseBytes(v.memory, 'memory');
    if (l.memory < 6 * 1024 * 1024) throw usage('Minimum memory limit allowed is 6MB');
  }
  if (v['memory-swap'] !== undefined) {
    if (l.memory === undefined) throw usage('You should always set the Memory limit when using Memoryswap limit');
    l.memorySwap = v['memory-swap'] === '-1' ? -1 : parseBytes(v['memory-swap'], 'memory-swap');
    if (l.memorySwap >= 0 && l.memorySwap < l.memory) throw usage('Minimum memoryswap limit should be larger than memory limit, see usage');
  } else if (l.memory !== undefined) {
    l.memorySwap = l.memory * 2;
  }
  if (v['cpu-shares'] !== undefined) l.cpuShares = parseInteger(v['cpu-shares'], 'cpu-shares', 2, 262144);
  if (v['cpu-period'] !== undefined) l.cpuPeriod = parseInteger(v['cpu-period'], 'cpu-period', 1000, 1_000_000);
  if (v['cpu-quota'] !== undefined) l.cpuQuota = parseInteger(v['cpu-quota'], 'cpu-quota', 1000);
  if (v['cpuset-cpus'] !== undefined) {
    if (!/^\d+(-\d+)?(,\d+(-\d+)?)*$/.test(v['cpuset-cpus'])) throw usage(`invalid argument "${v['cpuset-cpus']}" for "--cpuset-cpus" flag`);
    l.cpusetCpus = v['cpuset-cpus'];
  }
  if (v['pids-limit'] !== undefined) l.pids = parseInteger(v['pids-limit'], 'pids-limit', -1);
  return l;
}

/** SandboxOptions from the flags of one command. */
export function sandboxFromFlags(v: SandboxFlagValues): SandboxOptions {
  const o: SandboxOptions = { limits: limitsFrom(v) };
  if (v['step-timeout'] !== undefined) o.timeoutMs = parseDuration(v['step-timeout'], 'step-timeout');
  if (v.runtime !== undefined) o.runtime = v.runtime;
  if (v.userns !== undefined) {
    if (v.userns !== 'host' && v.userns !== 'private') throw usage(`invalid --userns "${v.userns}": private (the default) or host`);
    o.userns = v.userns;
  }
  return o;
}

type NumericLimit = 'memory' | 'memorySwap' | 'cpuQuota' | 'pids';
const CEILING_FLAGS: Record<NumericLimit, string> = { memory: 'memory', memorySwap: 'memory-swap', cpuQuota: 'cpu-quota', pids: 'pids-limit' };

/** Unlimited (absent, -1 or 0 for pids) sorts above every number. */
function above(asked: number | undefined, ceiling: number): boolean {
  return asked === undefined || asked < 0 || (asked === 0 && ceiling > 0) || asked > ceiling;
}

/**
 * A build's sandbox under a server's (`serve`, `worker`): the server's values are the defaults,
 * and a build may ask for less but never more. The runtime and a user namespace are the
 * operator's choice alone.
 */
export function withinCeilings(asked: SandboxOptions, server: SandboxOptions): SandboxOptions {
  const limits: StepLimits = { ...server.limits, ...asked.limits };
  for (const k of Object.keys(CEILING_FLAGS) as NumericLimit[]) {
    const ceiling = k === 'pids' ? (server.limits?.pids ?? DEFAULT_PIDS_LIMIT) : server.limits?.[k];
    if (ceiling === undefined || ceiling < 0) continue;
    if (asked.limits?.[k] !== undefined && above(asked.limits[k], ceiling)) {
      throw usage(`--${CEILING_FLAGS[k]} ${asked.limits[k]} is above this server's limit of ${ceiling}`);
    }
  }
  if (asked.userns === 'host' && server.userns !== 'host') throw usage('--userns=host is not allowed by this server');
  const timeoutMs = asked.timeoutMs !== undefined && server.timeoutMs !== undefined ? Math.min(asked.timeoutMs, server.timeoutMs) : asked.timeoutMs ?? server.timeoutMs;
  return { ...server, limits, ...(timeoutMs !== undefined ? { timeoutMs } : {}) };
}

function oneLimit(by: Limit, o: SandboxOptions | undefined): string {
  const l = o?.limits;
  if (by === 'memory') return `killed: out of memory under the memory limit of ${l?.memory !== undefined ? formatBytes(l.memory) : 'the step'} (--memory)`;
  if (by === 'pids') return `it reached the limit of ${l?.pids ?? DEFAULT_PIDS_LIMIT} processes (--pids-limit)`;
  return `killed: it ran longer than the step timeout of ${formatDuration(o?.timeoutMs ?? 0)} (--step-timeout)`;
}

/** What a step ran into, in words that name each limit and its flag; the first ended it. */
export function limitMessage(limits: Limit[], o: SandboxOptions | undefined): string {
  return limits.map((by) => oneLimit(by, o)).join('; ');
}

/** What an operator may allow on `serve` and `worker` (`--allow`), as BuildKit's entitlements. */
export const ENTITLEMENTS = ['network.host', 'security.insecure'] as const;
export type Entitlement = (typeof ENTITLEMENTS)[number];

/** A server's sandbox: the defaults and ceilings for every build, and what it allows. */
export interface SandboxPolicy {
  sandbox: SandboxOptions;
  entitlements: Entitlement[];
}

/** `--allow X` values, checked. */
export function parseAllow(values: string[] | undefined): Entitlement[] {
  const out: Entitlement[] = [];
  for (const v of values ?? []) {
    if (!(ENTITLEMENTS as readonly string[]).includes(v)) throw usage(`unknown entitlement "${v}" for --allow: ${ENTITLEMENTS.join(', ')}`);
    out.push(v as Entitlement);
  }
  return out;
}

/** `--network` as build and run take it (Docker's `bridge` is the default mode's other name). */
export function parseNetwork(v: string | undefined): NetworkMode {
  if (v === undefined || v === '' || v === 'default' || v === 'bridge') return 'default';
  if (v === 'none' || v === 'host') return v;
  throw usage(`unsupported network mode "${v}": default, none or host`);
}
