import { sha256Hex } from '../fs.js';

/** How many leading steps a build is routed by. */
export const ROUTE_DEPTH = 5;

/**
 * The Dockerfile's first instructions, cheaply: logical lines (comments dropped, `\`
 * continuations joined, whitespace collapsed), without parsing. Enough to recognise a repeat
 * of the same chain; the real cache keys are computed by the worker.
 */
export function leadingInstructions(text: string, depth = ROUTE_DEPTH): string[] {
  const out: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (current === '' && (line === '' || line.startsWith('#'))) continue;
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    current += line;
    out.push(current.replace(/\s+/g, ' ').trim());
    current = '';
    if (out.length >= depth) break;
  }
  if (current.trim() && out.length < depth) out.push(current.replace(/\s+/g, ' ').trim());
  return out;
}

/** What a build's route keys are made of. */
export interface RouteInputs {
  tenant: string;
  dockerfileText: string;
  dockerfile: string;
  contextDigest: string;
  buildArgs: Record<string, string>;
  target?: string | undefined;
}

/**
 * The build's route keys, one per leading step after the first FROM: key i covers the tenant,
 * the build's options and the instructions up to that step, plus the context's digest once a COPY or ADD is among them (so two builds
 * share a key exactly when their first i steps can share a cache chain). 16 hex each: a
 * worker's advertised set stays small.
 */
export function routeKeys(r: RouteInputs): string[] {
  const head = JSON.stringify([r.tenant, r.dockerfile, r.target ?? '', Object.entries(r.buildArgs).sort()]);
  const keys: string[] = [];
  let acc = head;
  let usesContext = false;
  let steps = 0;
  for (const ins of leadingInstructions(r.dockerfileText)) {
    if (/^(COPY|ADD)\s/i.test(ins)) usesContext = true;
    acc += `\n${ins}`;
    // A prefix of only FROM and ARG holds nothing worth routing for (every worker fetches
    // the base alike): keys start at the first step after them.
    if (/^(FROM|ARG)\s/i.test(ins) && steps === 0) continue;
    steps++;
    keys.push(sha256Hex(`${acc}\n${usesContext ? r.contextDigest : ''}`).slice(0, 16));
  }
  return keys;
}
