/**
 * `RUN --mount=...` and `RUN --security=...` as BuildKit's Dockerfile frontend reads them: a
 * comma-separated list of `key=value` fields (keys case-insensitive, `type` defaults to `bind`),
 * turned into a typed `RunMount`. Pure: the planner expands variables in the values first, and
 * an option a mount type does not take, or a value that makes no sense, is an error naming the
 * Dockerfile line (never ignored).
 */

/** `sharing=` of a cache mount. */
export type CacheSharing = 'shared' | 'private' | 'locked';

/** Owner and mode of what a mount puts in the step (a cache folder, a secret file, a socket). */
export interface MountOwner { mode: number; uid: number; gid: number }

/** `type=cache`: a folder kept on the worker between builds, per tenant and `id`. */
export interface CacheMount extends MountOwner {
  type: 'cache'; target: string; id: string; sharing: CacheSharing; from?: string; source: string; readonly: boolean;
}
/** `type=secret`: a build secret as a read-only file (or an environment variable with `env=`). */
export interface SecretMount extends MountOwner { type: 'secret'; id: string; target?: string; env?: string; required: boolean }
/** `type=bind`: a folder or file of a stage, an image or the context; writes are discarded. */
export interface BindMount { type: 'bind'; target: string; from?: string; source: string; rw: boolean }
/** `type=tmpfs`: an empty tmpfs. */
export interface TmpfsMount { type: 'tmpfs'; target: string; size?: number }
/** `type=ssh`: the build's SSH agent socket `id`. */
export interface SshMount extends MountOwner { type: 'ssh'; id: string; target: string; required: boolean }

export type RunMount = CacheMount | SecretMount | BindMount | TmpfsMount | SshMount;
export type MountType = RunMount['type'];

/** The keys each type takes (aliases folded: dst/destination -> target, src -> source, ro -> readonly). */
const KEYS: Record<MountType, readonly string[]> = {
  cache: ['target', 'id', 'sharing', 'from', 'source', 'mode', 'uid', 'gid', 'readonly', 'rw'],
  secret: ['target', 'id', 'env', 'required', 'mode', 'uid', 'gid'],
  bind: ['target', 'from', 'source', 'readonly', 'rw'],
  tmpfs: ['target', 'size'],
  ssh: ['target', 'id', 'required', 'mode', 'uid', 'gid'],
};

const ALIASES: Record<string, string> = {
  dst: 'target', destination: 'target', src: 'source', ro: 'readonly', readwrite: 'rw',
};

const BOOLEANS = new Set(['readonly', 'rw', 'required']);

/** Splits `a=b,c,d=e` into fields (BuildKit reads the flag as one CSV record; quotes allowed). */
export function mountFields(spec: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quote: string | undefined;
  for (const ch of spec) {
    if (quote) {
      if (ch === quote) quote = undefined;
      else cur += ch;
    } else if (ch === '"' || ch === "'") quote = ch;
    else if (ch === ',') {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out.filter((f) => f.trim() !== '');
}

function parseBool(key: string, v: string | undefined, fail: (d: string) => Error): boolean {
  if (v === undefined || v === '' || /^(true|1)$/i.test(v)) return true;
  if (/^(false|0)$/i.test(v)) return false;
  throw fail(`RUN --mount: invalid value for ${key}: "${v}" (true or false)`);
}

function parseId(key: string, v: string, fail: (d: string) => Error): number {
  if (!/^\d+$/.test(v) || Number(v) > 65535) throw fail(`RUN --mount: invalid ${key} "${v}": a number from 0 to 65535`);
  return Number(v);
}

function parseMode(v: string, fail: (d: string) => Error): number {
  if (!/^[0-7]{1,4}$/.test(v)) throw fail(`RUN --mount: invalid mode "${v}": an octal number such as 0755`);
  return Number.parseInt(v, 8);
}

/** tmpfs `size=`: bytes, or Docker's units (`64m`, `1g`). */
function parseSize(v: string, fail: (d: string) => Error): number {
  const m = /^(\d+)([kmg]?)i?b?$/i.exec(v);
  if (!m) throw fail(`RUN --mount: invalid size "${v}": bytes, or e.g. 64m, 1g`);
  return Number(m[1]) * { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
}

/** Reads the fields into a key -> value map, checking every key against the type. */
function readFields(spec: string, fail: (d: string) => Error): { type: MountType; kv: Map<string, string | undefined> } {
  const kv = new Map<string, string | undefined>();
  let type: string = 'bind';
  for (const f of mountFields(spec)) {
    const eq = f.indexOf('=');
    const rawKey = (eq < 0 ? f : f.slice(0, eq)).trim().toLowerCase();
    const value = eq < 0 ? undefined : f.slice(eq + 1);
    if (rawKey === 'type') {
      type = (value ?? '').toLowerCase();
      continue;
    }
    const key = ALIASES[rawKey] ?? rawKey;
    if (value === undefined && !BOOLEANS.has(key)) throw fail(`RUN --mount: option "${rawKey}" needs a value (${rawKey}=...)`);
    if (kv.has(key)) throw fail(`RUN --mount: option "${rawKey}" given twice`);
    kv.set(key, rawKey === 'ro' || rawKey === 'readonly' ? value : value);
  }
  if (!(type in KEYS)) throw fail(`RUN --mount: unsupported mount type "${type}" (bind, cache, tmpfs, secret or ssh)`);
  const t = type as MountType;
  for (const k of kv.keys()) {
    if (!KEYS[t].includes(k)) throw fail(`RUN --mount: type=${t} does not take the option "${k}"`);
  }
  return { type: t, kv };
}

/** Checks a `--mount` value's keys and type at parse time, before any expansion. */
export function checkRunMount(spec: string, fail: (d: string) => Error): void {
  readFields(spec, fail);
}

/** An absolute target (a relative one is under the working directory, as in BuildKit). */
function targetOf(v: string | undefined, workdir: string, fail: (d: string) => Error, type: string): string {
  if (v === undefined || v === '') throw fail(`RUN --mount: type=${type} needs a target (target=/path)`);
  const abs = v.startsWith('/') ? v : `${workdir.replace(/\/+$/, '')}/${v}`;
  const parts: string[] = [];
  for (const p of abs.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') parts.pop();
    else parts.push(p);
  }
  if (parts.length === 0) throw fail('RUN --mount: the target cannot be /');
  return `/${parts.join('/')}`;
}

function owner(kv: Map<string, string | undefined>, mode: number, fail: (d: string) => Error): MountOwner {
  return {
    mode: kv.has('mode') ? parseMode(kv.get('mode')!, fail) : mode,
    uid: kv.has('uid') ? parseId('uid', kv.get('uid')!, fail) : 0,
    gid: kv.has('gid') ? parseId('gid', kv.get('gid')!, fail) : 0,
  };
}

/**
 * Parses one expanded `--mount` value. `index` counts the step's ssh mounts before this one
 * (the default ssh target is `/run/buildkit/ssh_agent.N`).
 */
export function parseRunMount(spec: string, workdir: string, sshIndex: number, fail: (d: string) => Error): RunMount {
  const { type, kv } = readFields(spec, fail);
  const str = (k: string) => kv.get(k);
  const bool = (k: string, dflt: boolean) => (kv.has(k) ? parseBool(k, kv.get(k), fail) : dflt);
  switch (type) {
    case 'cache': {
      const target = targetOf(str('target'), workdir, fail, type);
      const sharing = (str('sharing') ?? 'shared').toLowerCase();
      if (sharing !== 'shared' && sharing !== 'private' && sharing !== 'locked') throw fail(`RUN --mount: invalid sharing "${sharing}" (shared, private or locked)`);
      const readonly = kv.has('rw') ? !bool('rw', true) : bool('readonly', false);
      const from = str('from');
      return { type, target, id: str('id') || target, sharing, ...(from ? { from } : {}), source: str('source') ?? '/', readonly, ...owner(kv, 0o755, fail) };
    }
    case 'secret': {
      const id = str('id') || (str('target') ? str('target')!.split('/').filter(Boolean).pop() ?? '' : '');
      if (id === '') throw fail('RUN --mount: type=secret needs an id (id=NAME) or a target');
      const env = str('env');
      if (env !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(env)) throw fail(`RUN --mount: invalid env "${env}": a variable name`);
      const target = str('target') !== undefined || env === undefined ? targetOf(str('target') ?? `/run/secrets/${id}`, workdir, fail, type) : undefined;
      return { type, id, ...(target !== undefined ? { target } : {}), ...(env !== undefined ? { env } : {}), required: bool('required', false), ...owner(kv, 0o400, fail) };
    }
    case 'bind': {
      const rw = kv.has('readonly') ? !bool('readonly', true) : bool('rw', false);
      const from = str('from');
      return { type, target: targetOf(str('target'), workdir, fail, type), ...(from ? { from } : {}), source: str('source') ?? '/', rw };
    }
    case 'tmpfs': {
      const size = str('size');
      return { type, target: targetOf(str('target'), workdir, fail, type), ...(size !== undefined ? { size: parseSize(size, fail) } : {}) };
    }
    case 'ssh': {
      const target = targetOf(str('target') ?? `/run/buildkit/ssh_agent.${sshIndex}`, workdir, fail, type);
      return { type, id: str('id') || 'default', target, required: bool('required', false), ...owner(kv, 0o600, fail) };
    }
  }
}

/** `RUN --security=`: `sandbox` is the default; `insecure` needs the security.insecure entitlement. */
export function parseSecurity(v: string | undefined, fail: (d: string) => Error): 'sandbox' | 'insecure' {
  if (v === undefined || v === 'sandbox') return 'sandbox';
  if (v === 'insecure') return 'insecure';
  throw fail(`RUN --security: unsupported value "${v}" (sandbox or insecure)`);
}
