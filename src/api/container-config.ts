import { ApiError, badParameter } from './http-errors.js';
import type { NetworkMode } from '../sandbox/oci-spec.js';
import type { SandboxOptions } from '../sandbox/container.js';
import type { SandboxPolicy } from '../sandbox/limits.js';
import { withinCeilings } from '../sandbox/limits.js';

/** What `POST /containers/create` asks for, checked (the body is hostile). */
export interface CreateRequest {
  image: string;
  cmd: string[] | null;
  entrypoint: string[] | null;
  env: string[];
  user: string;
  workingDir: string;
  hostname: string;
  tty: boolean;
  openStdin: boolean;
  stdinOnce: boolean;
  labels: Record<string, string>;
  autoRemove: boolean;
  network: NetworkMode;
  sandbox: SandboxOptions;
  consoleSize: { rows: number; cols: number } | undefined;
}

const MAX_ARGS = 4096;
const MAX_STRING = 65536;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function str(v: unknown, what: string, dflt = ''): string {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'string' || v.length > MAX_STRING || v.includes('\0')) throw badParameter(`invalid ${what}: a string without NUL of at most ${MAX_STRING} characters`);
  return v;
}

function strings(v: unknown, what: string): string[] | null {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string') return [str(v, what)];
  if (!Array.isArray(v) || v.length > MAX_ARGS) throw badParameter(`invalid ${what}: an array of at most ${MAX_ARGS} strings`);
  return v.map((x) => str(x, what));
}

function bool(v: unknown, what: string): boolean {
  if (v === undefined || v === null) return false;
  if (typeof v !== 'boolean') throw badParameter(`invalid ${what}: true or false`);
  return v;
}

function int(v: unknown, what: string): number | undefined {
  if (v === undefined || v === null || v === 0) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw badParameter(`invalid ${what}: an integer`);
  return v;
}

/** A value the CLI sends when the option was not given. */
function isDefault(k: string, v: unknown): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === '') return true;
  if (Array.isArray(v)) return v.length === 0 || (k === 'ConsoleSize' && v.every((x) => x === 0));
  if (isObj(v)) {
    if (k === 'RestartPolicy') return (v['Name'] === 'no' || v['Name'] === '' || v['Name'] === undefined) && !v['MaximumRetryCount'];
    if (k === 'LogConfig') return !v['Type'] || v['Type'] === 'json-file';
    return Object.keys(v).length === 0;
  }
  return k === 'MemorySwappiness' && v === -1;
}

/** HostConfig keys Slipway acts on; any other key with a value that is not its default is refused. */
const HOST_KEYS = new Set(['AutoRemove', 'NetworkMode', 'ConsoleSize', 'Memory', 'MemorySwap', 'CpuShares', 'CpuPeriod', 'CpuQuota', 'CpusetCpus', 'PidsLimit', 'NanoCpus']);

function hostConfig(h: unknown, policy: SandboxPolicy): Pick<CreateRequest, 'autoRemove' | 'network' | 'sandbox' | 'consoleSize'> {
  if (h !== undefined && h !== null && !isObj(h)) throw badParameter('invalid HostConfig: an object');
  const hc = (h ?? {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(hc)) {
    if (!HOST_KEYS.has(k) && !isDefault(k, v)) throw badParameter(`slipway does not support HostConfig.${k.slice(0, 64)} (containers get the sandbox of "slipway run": no binds, ports, devices or privileges)`);
  }
  const mode = str(hc['NetworkMode'], 'HostConfig.NetworkMode', 'default');
  const network: NetworkMode = mode === 'default' || mode === 'bridge' || mode === '' ? 'default' : mode === 'none' ? 'none' : mode === 'host' ? 'host' : (() => { throw badParameter(`network mode ${JSON.stringify(mode.slice(0, 64))} is not supported: default, bridge, none or host`); })();
  if (network === 'host' && !policy.entitlements.includes('network.host')) throw new ApiError(403, 'the host network needs the network.host entitlement (slipway serve --allow network.host)');
  const limits: NonNullable<SandboxOptions['limits']> = {};
  const memory = int(hc['Memory'], 'HostConfig.Memory');
  const swap = int(hc['MemorySwap'], 'HostConfig.MemorySwap');
  const shares = int(hc['CpuShares'], 'HostConfig.CpuShares');
  const period = int(hc['CpuPeriod'], 'HostConfig.CpuPeriod');
  let quota = int(hc['CpuQuota'], 'HostConfig.CpuQuota');
  const nano = int(hc['NanoCpus'], 'HostConfig.NanoCpus');
  const pids = int(hc['PidsLimit'], 'HostConfig.PidsLimit');
  if (nano !== undefined) {
    // --cpus N is NanoCpus; as Docker does, it is a quota over a 100 ms period.
    if (nano < 0 || quota !== undefined || period !== undefined) throw badParameter('invalid HostConfig.NanoCpus: positive, and not with CpuQuota or CpuPeriod');
    quota = Math.max(1000, Math.round(nano / 10_000));
    limits.cpuPeriod = 100_000;
  }
  if (memory !== undefined) limits.memory = memory;
  if (swap !== undefined) limits.memorySwap = swap;
  if (shares !== undefined) limits.cpuShares = shares;
  if (period !== undefined) limits.cpuPeriod = period;
  if (quota !== undefined) limits.cpuQuota = quota;
  if (pids !== undefined) limits.pids = pids;
  const cpuset = str(hc['CpusetCpus'], 'HostConfig.CpusetCpus');
  if (cpuset !== '') {
    if (!/^\d{1,4}(-\d{1,4})?(,\d{1,4}(-\d{1,4})?){0,63}$/.test(cpuset)) throw badParameter(`invalid HostConfig.CpusetCpus ${JSON.stringify(cpuset.slice(0, 64))}`);
    limits.cpusetCpus = cpuset;
  }
  for (const [k, v] of Object.entries(limits)) if (typeof v === 'number' && v < 0 && !(k === 'memorySwap' && v === -1) && !(k === 'pids' && v === -1)) throw badParameter(`invalid HostConfig limit: ${k} ${v}`);
  const sandbox = withinCeilings({ limits }, policy.sandbox);
  const cs = hc['ConsoleSize'];
  let consoleSize: CreateRequest['consoleSize'];
  if (Array.isArray(cs) && cs.length === 2 && cs.every((x) => Number.isInteger(x) && x > 0 && x < 10000)) consoleSize = { rows: cs[0] as number, cols: cs[1] as number };
  return { autoRemove: bool(hc['AutoRemove'], 'HostConfig.AutoRemove'), network, sandbox, consoleSize };
}

/** Checks a create body; unknown options with values are refused rather than ignored. */
export function parseCreate(body: unknown, policy: SandboxPolicy): CreateRequest {
  if (!isObj(body)) throw badParameter('invalid container config: a JSON object');
  const image = str(body['Image'], 'Image');
  if (image === '' || image.length > 512) throw badParameter('invalid Image: a name of 1 to 512 characters');
  const env = strings(body['Env'], 'Env') ?? [];
  for (const e of env) if (!/^[^=]+/.test(e)) throw badParameter(`invalid Env entry ${JSON.stringify(e.slice(0, 64))}: NAME=VALUE`);
  const workingDir = str(body['WorkingDir'], 'WorkingDir');
  if (workingDir !== '' && !workingDir.startsWith('/')) throw badParameter(`the working directory '${workingDir.slice(0, 256)}' is invalid, it needs to be an absolute path`);
  const hostname = str(body['Hostname'], 'Hostname');
  if (hostname !== '' && !/^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/.test(hostname)) throw badParameter(`invalid hostname format: ${hostname.slice(0, 64)}`);
  const labels: Record<string, string> = {};
  if (body['Labels'] !== undefined && body['Labels'] !== null) {
    if (!isObj(body['Labels']) || Object.keys(body['Labels']).length > 1024) throw badParameter('invalid Labels: an object of strings');
    for (const [k, v] of Object.entries(body['Labels'])) labels[str(k, 'label')] = str(v, `label ${k.slice(0, 64)}`);
  }
  for (const k of ['Volumes', 'ExposedPorts', 'Healthcheck', 'Shell', 'StopSignal', 'MacAddress', 'OnBuild']) {
    if (!isDefault(k, body[k])) throw badParameter(`slipway does not support ${k} on containers`);
  }
  return {
    image, cmd: strings(body['Cmd'], 'Cmd'), entrypoint: strings(body['Entrypoint'], 'Entrypoint'), env, user: str(body['User'], 'User'), workingDir, hostname,
    tty: bool(body['Tty'], 'Tty'), openStdin: bool(body['OpenStdin'], 'OpenStdin'), stdinOnce: bool(body['StdinOnce'], 'StdinOnce'), labels,
    ...hostConfig(body['HostConfig'], policy),
  };
}

/** Docker's container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, with an optional leading `/`. */
export function parseName(raw: string | null): string | undefined {
  if (raw === null || raw === '') return undefined;
  const n = raw.replace(/^\//, '');
  if (n.length > 128 || !/^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/.test(n)) throw badParameter(`Invalid container name (${raw.slice(0, 140)}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
  return n;
}
