import fs from 'node:fs/promises';
import { constants } from 'node:fs';
import { SlipwayError } from '../errors.js';

/**
 * Named pipes, sockets and device files in a build context. Reading one can block forever (a
 * pipe with no writer) or have side effects (a device), so Slipway never opens them: inside a
 * folder that is copied they are skipped, as Docker skips sockets; named directly (a COPY
 * source, the Dockerfile, `.dockerignore`) they are an error.
 */

/** What a stat describes when it is neither a regular file, a folder nor a symlink. */
export function specialKind(st: { isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean }): string | undefined {
  if (st.isFIFO()) return 'a named pipe';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return undefined;
}

/** The error for a special file named where a regular file or folder is needed. */
export function specialFileError(name: string, kind: string): SlipwayError {
  return new SlipwayError('ERR_CONTEXT_PATH', `${name} is ${kind}, not a regular file: named pipes, sockets and devices cannot be part of a build`);
}

/**
 * Opens a file for reading without ever blocking on a special file: stat first (so a pipe is
 * never opened), then open non-blocking and check again on the descriptor (a file swapped for
 * a pipe in between is refused too).
 */
export async function openRegular(file: string, name: string): Promise<fs.FileHandle> {
  const st = await fs.stat(file);
  const kind = specialKind(st);
  if (kind) throw specialFileError(name, kind);
  const fh = await fs.open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  const again = specialKind(await fh.stat());
  if (again) {
    await fh.close();
    throw specialFileError(name, again);
  }
  return fh;
}

/** A small text file of the context (`.dockerignore`), or undefined when it does not exist. */
export async function readRegularText(file: string, name: string): Promise<string | undefined> {
  let fh: fs.FileHandle;
  try {
    fh = await openRegular(file, name);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  try {
    return await fh.readFile('utf8');
  } finally {
    await fh.close();
  }
}
