import fs from 'node:fs/promises';
import path from 'node:path';
import { SlipwayError } from '../errors.js';
import { describeSystemError } from './report-error.js';

/**
 * The files a user names on the command line (`load -i`, `import FILE`, `save -o`), opened
 * before any work starts, so a typo is one clear line and never a stream's unhandled
 * 'error' event after the work began.
 */

/** Opens a file to read; a missing file or a folder is a clear error. */
export async function openInput(file: string): Promise<NodeJS.ReadableStream> {
  let fh: fs.FileHandle;
  try {
    fh = await fs.open(file, 'r');
  } catch (e) {
    throw new SlipwayError('ERR_FILE_NOT_FOUND', describeSystemError(e) ?? `open ${file}: ${(e as Error).message}`);
  }
  if ((await fh.stat()).isDirectory()) {
    await fh.close();
    throw new SlipwayError('ERR_FILE_NOT_FOUND', `read ${file}: is a directory`);
  }
  return fh.createReadStream();
}

/**
 * Checks `save -o PATH` as the docker CLI does (ValidateOutputPath): the folder must exist and
 * PATH must not be a folder. Messages are Docker's.
 */
export async function checkOutputPath(file: string): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  const st = await fs.stat(dir).catch((e: NodeJS.ErrnoException) => e);
  if (st instanceof Error) {
    if (st.code === 'ENOENT' || st.code === 'ENOTDIR') throw new SlipwayError('ERR_FILE_NOT_FOUND', `failed to save image: invalid output path: directory ${JSON.stringify(path.dirname(file))} does not exist`);
    throw new SlipwayError('ERR_FILE_NOT_FOUND', `failed to save image: ${describeSystemError(st) ?? st.message}`);
  }
  if ((await fs.stat(file).catch(() => undefined))?.isDirectory()) {
    throw new SlipwayError('ERR_FILE_NOT_FOUND', `failed to save image: invalid output path: ${JSON.stringify(file)} is a directory`);
  }
}

/** Creates (truncates) a file to write; an unwritable folder is a clear error. */
export async function openOutput(file: string): Promise<NodeJS.WritableStream> {
  try {
    return (await fs.open(file, 'w', 0o644)).createWriteStream();
  } catch (e) {
    throw new SlipwayError('ERR_FILE_NOT_FOUND', `failed to save image: ${describeSystemError(e) ?? (e as Error).message}`);
  }
}
