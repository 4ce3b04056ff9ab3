/**
 * The programs Slipway runs on the host outside the sandbox, the Debian package that provides
 * each, and what it is for. A tool is looked up on its first use in a process (never on every
 * command, never again after) and a missing one fails with one line naming the package, in the
 * words the sandbox uses for its own programs (crun: src/sandbox/runtime.ts),
 * instead of a `spawn … ENOENT` stack.
 */
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import { SlipwayError } from '../errors.js';

/** tool -> Debian 12 package and use. Extended attributes need none: they go through a native binding. */
export const HOST_TOOLS = {
  cp: { pkg: 'coreutils', why: 'the vfs storage driver copies layers with it' },
  touch: { pkg: 'coreutils', why: 'the vfs storage driver restores folder times with it' },
  mknod: { pkg: 'coreutils', why: 'layers with whiteouts and device files need it' },
  mount: { pkg: 'mount', why: 'COPY --from mounts the source image with it' },
  bzip2: { pkg: 'bzip2', why: 'to decompress bzip2 archives' },
  xz: { pkg: 'xz-utils', why: 'to decompress xz archives' },
  'ssh-agent': { pkg: 'openssh-client', why: '--ssh ID=KEYFILE serves the key through an agent' },
  'ssh-add': { pkg: 'openssh-client', why: '--ssh ID=KEYFILE loads the key into an agent' },
} as const;

/** A program of the table. */
export type HostTool = keyof typeof HOST_TOOLS;

/** Where a PATH lookup falls back to, as the sandbox's does. */
const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const found = new Map<string, string>();

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * The absolute path of `tool` in `searchPath` (default: this process's PATH, which `spawn`
 * would search). Throws ERR_SANDBOX, one line, when it is not installed.
 */
export function hostTool(tool: HostTool, searchPath: string = process.env['PATH'] ?? SYSTEM_PATH): string {
  const memo = `${tool}\0${searchPath}`;
  const known = found.get(memo);
  if (known !== undefined) return known;
  for (const dir of searchPath.split(':')) {
    const candidate = path.join(dir || '.', tool);
    if (isExecutable(candidate)) {
      found.set(memo, candidate);
      return candidate;
    }
  }
  const { pkg, why } = HOST_TOOLS[tool];
  throw new SlipwayError('ERR_SANDBOX', `${tool} is not installed (${why}): install the Debian package ${pkg} (apt-get install ${pkg})`);
}

/** Checks every tool of `tools` (first use per process); throws for the first one missing. */
export function requireHostTools(tools: readonly HostTool[], searchPath?: string): void {
  for (const t of tools) hostTool(t, searchPath);
}
