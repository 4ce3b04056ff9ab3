import path from 'node:path';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import tarFs from 'tar-fs';
import { IgnoreMatcher, readDockerignore } from './dockerignore.js';
import { ContextSelection } from './context-selection.js';

/**
 * Packs a context folder as the docker CLI sends it: `.dockerignore` applied the way the CLI
 * walks (an excluded folder is entered only for what an exception brings back, and is not sent
 * itself), the Dockerfile and `.dockerignore` always sent (the CLI adds exceptions for them),
 * names sorted, modes kept (umask 0), owners 0:0. Named pipes, sockets and devices are skipped
 * without being opened.
 */
export async function packContext(dir: string, out: string, dockerfile = 'Dockerfile'): Promise<void> {
  const patterns = await readDockerignore(dir);
  const plain = new IgnoreMatcher(patterns);
  // build.TrimBuildFilesFromExcludes: an excluded .dockerignore or Dockerfile gets an exception.
  for (const always of ['.dockerignore', dockerfile]) {
    if (plain.matches(always)) patterns.push({ pattern: always, exclusion: true });
  }
  const selection = new ContextSelection(dir, new IgnoreMatcher(patterns));
  const pack = tarFs.pack(dir, {
    sort: true,
    umask: 0,
    // Not strict: named pipes, sockets and devices are skipped (never opened), as the build skips them.
    strict: false,
    // tar-fs enters every folder it sends; the sent entries below unsent folders are extra roots.
    entries: selection.packRoots(),
    ignore: (name: string) => !selection.isSent(path.relative(dir, name).split(path.sep).join('/')),
    map: (h: { uid: number; gid: number; uname?: string; gname?: string }) => {
      h.uid = 0;
      h.gid = 0;
      h.uname = '';
      h.gname = '';
      return h;
    },
  });
  await pipeline(pack, createWriteStream(out));
}
