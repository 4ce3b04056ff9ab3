import fs from 'node:fs/promises';
import path from 'node:path';
import type { IncomingMessage } from 'node:http';
import { receiveContext as receiveTar } from '../context/receive.js';
import { resolveInRoot } from '../snapshot/resolve-in-root.js';
import { parseDockerfile } from '../dockerfile/parse.js';
import { expandAt } from '../dockerfile/plan.js';
import { readRegularText } from '../context/special-file.js';
import { ApiError, badParameter } from './http-errors.js';
import { byteLimit, requestBody } from './body.js';

/**
 * Receives the request's build context tar (see `context/receive.ts`), bounded by `max` bytes
 * as sent and as extracted; a declared length over it is refused before any byte is read.
 */
export async function receiveContext(req: IncomingMessage, contextDir: string, max: number): Promise<string> {
  if (Number(req.headers['content-length'] ?? 0) > max) throw new ApiError(413, `build context exceeds the server's limit of ${max} bytes`);
  let tooBig: ApiError | undefined;
  const limit = (what: string) => {
    const t = byteLimit(max, what);
    t.on('error', (e) => { if (e instanceof ApiError) tooBig ??= e; });
    return t;
  };
  try {
    return await receiveTar(requestBody(req), contextDir, limit);
  } catch (e) {
    throw tooBig ?? e;
  }
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
