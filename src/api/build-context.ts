import fs from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { IncomingMessage } from 'node:http';
import { applyTarToRoot } from '../snapshot/apply.js';
import { decompressStream } from '../snapshot/unpack.js';
import { resolveInRoot } from '../snapshot/resolve-in-root.js';
import { parseDockerfile } from '../dockerfile/parse.js';
import { expandAt } from '../dockerfile/plan.js';
import { readRegularText } from '../context/special-file.js';
import { ApiError, badParameter } from './http-errors.js';
import { byteLimit, requestBody } from './body.js';

/**
 * Receives a build context tar (plain, gzip, bzip2 or xz, as `docker build --compress` may
 * send) into `contextDir` with the same safe applier a layer or ADD uses: entry names cannot
 * leave the folder, symlinks are never followed out of it. Both the bytes sent and the bytes
 * extracted are bounded by `max`. Returns the sha256 of the bytes as sent.
 */
export async function receiveContext(req: IncomingMessage, contextDir: string, max: number): Promise<string> {
  if (Number(req.headers['content-length'] ?? 0) > max) throw new ApiError(413, `build context exceeds the server's limit of ${max} bytes`);
  return extractContext(requestBody(req), contextDir, max);
}

/** The same for any stream of a context tar (`slipway build -` reads one from stdin). */
export async function extractContext(body: Readable, contextDir: string, max: number): Promise<string> {
  await fs.mkdir(contextDir, { mode: 0o755 });
  const sent = byteLimit(max, 'build context');
  const extracted = byteLimit(max, 'extracted build context');
  let tooBig: ApiError | undefined;
  for (const s of [sent, extracted]) s.on('error', (e) => { if (e instanceof ApiError) tooBig ??= e; });
  const hash = crypto.createHash('sha256');
  const hashing = new Transform({ transform(chunk: Buffer, _e, cb) { hash.update(chunk); cb(null, chunk); } });
  const fed = pipeline(body, hashing, sent);
  fed.catch(() => undefined);
  try {
    const { stream } = await decompressStream(sent);
    const unpacked = pipeline(stream as NodeJS.ReadableStream & AsyncIterable<Buffer>, completeTar(), extracted);
    unpacked.catch(() => undefined);
    await applyTarToRoot(extracted, contextDir, '/');
    await Promise.all([fed, unpacked]);
    return hash.digest('hex');
  } catch (e) {
    throw tooBig ?? e;
  }
}

/**
 * Restores the padding and end-of-archive blocks a tar may lack. docker CLI 28 sends a context
 * that ends right after the last entry's data when `-f` names a Dockerfile outside the context
 * (it appends that file unpadded); Go's tar reader, and so dockerd, accepts that. Zero blocks
 * after a complete archive are ignored by the reader.
 */
function completeTar(): Transform {
  let n = 0;
  return new Transform({
    transform(chunk: Buffer, _e, cb) {
      n += chunk.length;
      cb(null, chunk);
    },
    flush(cb) {
      cb(null, Buffer.alloc(((512 - (n % 512)) % 512) + 1024));
    },
  });
}

/**
 * Finds the Dockerfile the `dockerfile` parameter names, resolved inside the context (a
 * symlinked Dockerfile cannot reach a host file), with Docker's fallback from `Dockerfile`
 * to `dockerfile`. Returns its host path.
 */
export async function locateDockerfile(contextDir: string, name: string | undefined): Promise<string> {
  const candidates = name ? [name] : ['Dockerfile', 'dockerfile'];
  for (const c of candidates) {
    const host = await resolveInRoot(contextDir, c);
    const st = await fs.stat(host).catch(() => undefined);
    if (st?.isFile()) return host;
  }
  throw badParameter(`Cannot locate specified Dockerfile: ${name ?? 'Dockerfile'}`);
}

/**
 * A `.dockerignore` that is a symlink is replaced by the file it names inside the context (or
 * dropped), because the context loader reads it with the host's symlink rules.
 */
export async function pinDockerignore(contextDir: string): Promise<void> {
  const file = path.join(contextDir, '.dockerignore');
  const st = await fs.lstat(file).catch(() => undefined);
  if (!st?.isSymbolicLink()) return;
  const target = await resolveInRoot(contextDir, '.dockerignore');
  const text = (await readRegularText(target, '.dockerignore')) ?? '';
  await fs.rm(file, { force: true });
  await fs.writeFile(file, text, { mode: 0o644 });
}

/** A label key or value as written in the LABEL line: bare when it is one plain word, else quoted. */
function labelWord(w: string, quote: '"' | "'"): string {
  return /^[^\s"'\\$`=#]+$/.test(w) ? w : `${quote}${w}${quote}`;
}

/**
 * Applies the API's `labels` the way moby's legacy builder does: one `LABEL k=v` step per label,
 * sorted by key, appended to the last stage that is built (the `target` stage, else the final
 * one), so they are cached steps of their own and only the image built carries them. The lines
 * are inserted into the Dockerfile text; only "simple" labels are supported: each line must parse
 * back to exactly its label (no quotes in keys, no single quotes or newlines anywhere), anything
 * else is a 400.
 */
export function dockerfileWithLabels(text: string, labels: Record<string, string>, target: string | undefined): string {
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return text;
  for (const k of keys) {
    if (k === '' || /["'\\$`\n\r\0]/.test(k) || /['\n\r\0]/.test(labels[k]!)) {
      throw badParameter(`label ${JSON.stringify(k)}: keys with quotes, backslashes, '$' or newlines and values with single quotes or newlines are not supported`);
    }
  }
  let before: ReturnType<typeof parseDockerfile>;
  try {
    before = parseDockerfile(text);
  } catch {
    return text; // the build reports the Dockerfile's own error, with its own line numbers
  }
  // The last line of the stage that is built: steps after it belong to later stages.
  const froms = before.steps.map((st, i) => ({ st, i })).filter(({ st }) => st.kind === 'FROM');
  const t = target?.toLowerCase();
  const stageAt = froms.findIndex(({ st }) => st.kind === 'FROM' && t !== undefined && st.stageName?.toLowerCase() === t);
  if (stageAt < 0 && t !== undefined) return text; // the build reports the unknown target
  const next = stageAt >= 0 ? froms[stageAt + 1] : undefined;
  const lines = text.split('\n');
  const insertAfter = next ? before.steps[next.i - 1]!.endLine : lines.length;
  const added = keys.map((k) => `LABEL ${labelWord(k, '"')}=${labelWord(labels[k]!, "'")}`);
  const joined = [...lines.slice(0, insertAfter), ...(next ? [] : ['']), ...added, ...lines.slice(insertAfter)].join('\n') + (next ? '' : '\n');
  const after = parseDockerfile(joined);
  const firstLine = insertAfter + (next ? 1 : 2);
  const inserted = after.steps.filter((st) => st.line >= firstLine && st.line < firstLine + keys.length);
  const ok = after.steps.length === before.steps.length + keys.length && inserted.length === keys.length
    && inserted.every((st, i) => {
      if (st.kind !== 'LABEL' || st.pairs.length !== 1) return false;
      const ex = (w: string) => expandAt('Dockerfile', st.line, w, () => undefined, after.escape);
      return ex(st.pairs[0]![0]) === keys[i] && ex(st.pairs[0]![1]) === labels[keys[i]!];
    });
  if (!ok) throw badParameter('labels cannot be applied to this Dockerfile (its last instruction continues past the end of the file)');
  return joined;
}
