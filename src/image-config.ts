import path from 'node:path';

/**
 * Docker's image and container config shapes, with Docker's field names. `ContainerConfigJson`
 * is both an image's `config` and the `container_config` a step ran with.
 */
export interface HealthcheckJson {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  Retries?: number;
}

export interface ContainerConfigJson {
  Hostname: string;
  Domainname: string;
  User: string;
  AttachStdin: boolean;
  AttachStdout: boolean;
  AttachStderr: boolean;
  ExposedPorts?: Record<string, Record<string, never>> | null;
  Tty: boolean;
  OpenStdin: boolean;
  StdinOnce: boolean;
  Env: string[] | null;
  Cmd: string[] | null;
  Healthcheck?: HealthcheckJson | null;
  ArgsEscaped?: boolean;
  Image: string;
  Volumes: Record<string, Record<string, never>> | null;
  WorkingDir: string;
  Entrypoint: string[] | null;
  OnBuild: string[] | null;
  Labels: Record<string, string> | null;
  StopSignal?: string;
  Shell?: string[];
}

/** One `graph/<id>/json`: the seed's legacy per-layer image JSON. */
export interface ImageJson {
  id: string;
  parent?: string;
  comment?: string;
  created: string;
  container?: string;
  container_config: ContainerConfigJson;
  docker_version: string;
  author?: string;
  config: ContainerConfigJson;
  architecture: string;
  os: string;
  Size: number;
  /** True when the step changed no file (Docker's `empty_layer` in history). */
  throwaway?: boolean;
}

/** An empty config as Docker writes it. */
export function emptyContainerConfig(): ContainerConfigJson {
  return {
    Hostname: '',
    Domainname: '',
    User: '',
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    Tty: false,
    OpenStdin: false,
    StdinOnce: false,
    Env: null,
    Cmd: null,
    Image: '',
    Volumes: null,
    WorkingDir: '',
    Entrypoint: null,
    OnBuild: null,
    Labels: null,
  };
}

/** A deep copy (configs are plain JSON). */
export function cloneConfig(c: ContainerConfigJson): ContainerConfigJson {
  return JSON.parse(JSON.stringify(c)) as ContainerConfigJson;
}

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const DOCKER_VERSION = '20.10.24';

/** Looks up `NAME` in a `K=V` env list. */
export function envGet(env: readonly string[] | null, name: string): string | undefined {
  if (!env) return undefined;
  for (let i = env.length - 1; i >= 0; i--) {
    const e = env[i]!;
    const eq = e.indexOf('=');
    const k = eq < 0 ? e : e.slice(0, eq);
    if (k === name) return eq < 0 ? '' : e.slice(eq + 1);
  }
  return undefined;
}

/** Sets `NAME=value` in place of an existing entry (keeping its position) or appends it. */
export function envSet(env: string[], name: string, value: string): string[] {
  const out = [...env];
  const i = out.findIndex((e) => (e.indexOf('=') < 0 ? e : e.slice(0, e.indexOf('='))) === name);
  if (i >= 0) out[i] = `${name}=${value}`;
  else out.push(`${name}=${value}`);
  return out;
}

/**
 * The environment a container process gets, as Docker builds it: `PATH` (the default) and
 * `HOSTNAME` first, replaced or extended by `env` (the config's Env, build args, `-e`), then
 * `HOME` from the user's passwd entry when `env` has none (runc sets it that way; `home` is
 * `/` for a user without one).
 */
export function containerEnv(env: readonly string[], opts: { hostname: string; home: string }): string[] {
  let out = [DEFAULT_PATH, `HOSTNAME=${opts.hostname}`];
  for (const e of env) {
    const eq = e.indexOf('=');
    out = envSet(out, eq < 0 ? e : e.slice(0, eq), eq < 0 ? '' : e.slice(eq + 1));
  }
  if (envGet(out, 'HOME') === undefined) out.push(`HOME=${opts.home}`);
  return out;
}

/**
 * Go's filepath.Clean of an absolute path (`..` and `.` folded, no trailing `/`): a WorkingDir
 * written unclean (`/app/`, `/a/../b`) is made and entered so, as the daemon does.
 */
export function cleanPath(p: string): string {
  const n = path.posix.normalize(p);
  return n.length > 1 ? n.replace(/\/+$/, '') : n;
}
