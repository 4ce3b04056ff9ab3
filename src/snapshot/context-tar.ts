import path from 'node:path';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import tarFs from 'tar-fs';
import { IgnoreMatcher, parseDockerignore } from '../context/dockerignore.js';
import { readRegularText } from '../context/special-file.js';

/**
 * Packs a context folder as the docker CLI sends it: `.dockerignore` applied (the Dockerfile
 * and `.dockerignore` always included), names sorted, modes kept (umask 0), owners 0:0.
 * Named pipes, sockets and devices are skipped without being opened.
 */
export async function packContext(dir: string, out: string, dockerfile = 'Dockerfile'): Promise<void> {
  const ignoreText = (await readRegularText(path.join(dir, '.dockerignore'), '.dockerignore')) ?? '';
  const matcher = new IgnoreMatcher(parseDockerignore(ignoreText));
  const always = new Set([dockerfile, '.dockerignore']);
  const pack = tarFs.pack(dir, {
    sort: true,
    umask: 0,
    // Not strict: named pipes, sockets and devices are skipped (never opened), as the build skips them.
    strict: false,
    ignore: (name: string) => {
      const rel = path.relative(dir, name).split(path.sep).join('/');
      return rel !== '' && !always.has(rel) && matcher.isExcluded(rel);
    },
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
