/**
 * The OCI runtime and the other host programs a step needs, found once per process. crun is
 * preferred (it starts a container in a few milliseconds); runc is accepted where crun is
 * missing; `--runtime PATH` picks one explicitly. A missing program is reported in one line
 * that names the Debian package which provides it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { SlipwayError } from '../errors.js';

/** A runtime binary and which one it is (their command lines differ). */
export interface Runtime { kind: 'crun' | 'runc'; path: string }

const SEARCH_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** The host's PATH and the usual system dirs. */
function searchDirs(): string[] {
  return [...(process.env['PATH'] ?? '').split(':'), ...SEARCH_PATH.split(':')].filter(Boolean);
}

/** Where `name` is in `dirs` (default: the host's PATH and the usual system dirs), if anywhere. */
export function findOnPath(name: string, dirs: string[] = searchDirs()): string | undefined {
  for (const d of dirs) {
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** One line for a missing host program, naming its Debian package. */
export function missingTool(name: string, pkg: string, why: string): SlipwayError {
  return new SlipwayError('ERR_SANDBOX', `${name} is not installed (${why}): install the Debian package ${pkg} (apt-get install ${pkg})`);
}

const runtimes = new Map<string, Runtime>();

/**
 * The runtime to use: `override` (a path or a name on PATH) when given, else crun, else runc.
 * The kind comes from the binary's name, or from `--version` output when the name says nothing.
 */
export function findRuntime(override?: string, dirs?: string[]): Runtime {
  const key = `${override ?? ''}\0${dirs?.join(':') ?? ''}`;
  const known = runtimes.get(key);
  if (known) return known;
  let found: Runtime | undefined;
  if (override !== undefined) {
    const p = override.includes('/') ? override : findOnPath(override, dirs);
    if (p === undefined || !fs.existsSync(p)) throw new SlipwayError('ERR_SANDBOX', `OCI runtime not found: ${override}`);
    found = { kind: /runc/.test(path.basename(p)) ? 'runc' : 'crun', path: path.resolve(p) };
  } else {
    const crun = findOnPath('crun', dirs);
    const runc = crun === undefined ? findOnPath('runc', dirs) : undefined;
    if (crun !== undefined) found = { kind: 'crun', path: crun };
    else if (runc !== undefined) found = { kind: 'runc', path: runc };
  }
  if (found === undefined) throw missingTool('crun', 'crun', 'the OCI runtime that runs RUN steps; runc also works');
  runtimes.set(key, found);
  return found;
}

/** The compiled shim (native/shim.c, built by `npm run build`). */
export function shimPath(): string {
  const p = fileURLToPath(new URL('../../native/slipway-shim', import.meta.url));
  if (!fs.existsSync(p)) {
    throw new SlipwayError('ERR_SANDBOX', `${p} is missing: run "npm run build" (it compiles native/shim.c; needs the Debian package gcc)`);
  }
  return p;
}

/** The runtime's command line for one foreground container. */
export function runtimeArgv(rt: Runtime, o: { stateDir: string; bundle: string; id: string; logFile: string; consoleSocket?: string }): string[] {
  const common = [`--root=${o.stateDir}`, `--log=${o.logFile}`, '--log-format=json'];
  const run = ['run', ...(o.consoleSocket !== undefined ? [`--console-socket=${o.consoleSocket}`] : []), '--bundle', o.bundle, o.id];
  // crun manages no cgroup here: the shim has already put itself (and so the container) into
  // the step's cgroups. runc cannot be told that; it nests its own below ours (cgroupsPath).
  if (rt.kind === 'crun') return [rt.path, '--cgroup-manager=disabled', ...common, ...run];
  return [rt.path, ...common, ...run];
}
