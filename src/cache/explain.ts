import type { ContainerConfigJson } from '../image-config.js';
import type { DigestEntry } from './context-digest.js';

/** The structured inputs of a step's cache key (what `cacheKeyOf` hashes). */
export interface Preimage {
  v: number;
  parent: string;
  config: ContainerConfigJson;
  result: ContainerConfigJson;
  extra: { entries?: DigestEntry[][]; sources?: string[]; chmod?: number | null; dest?: string; network?: string; from?: string; paths?: string[] } | null;
}

/** What the explainer knows besides the two preimages. */
export interface ExplainContext {
  /** `Step N` of the nearest earlier step of this stage that missed, if the parent came from it. */
  parentRebuiltStep?: number;
  /** True for the first step after FROM: a parent change is a base image change. */
  firstInStage: boolean;
  /** `Step N` of the nearest earlier COPY --link step whose layer was re-stacked on a new parent. */
  parentRelinkedStep?: number;
}

const short = (id: string) => id.replace(/^sha256:/, '').slice(0, 12) || 'scratch';

function splitArgs(cmd: string[] | null): { args: Map<string, string>; rest: string[] } {
  const c = cmd ?? [];
  const m = /^\|(\d+)$/.exec(c[0] ?? '');
  if (!m) return { args: new Map(), rest: c };
  const n = Number(m[1]);
  const args = new Map<string, string>();
  for (const kv of c.slice(1, 1 + n)) {
    const eq = kv.indexOf('=');
    args.set(kv.slice(0, eq), kv.slice(eq + 1));
  }
  return { args, rest: c.slice(1 + n) };
}

function envMap(env: string[] | null): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of env ?? []) {
    const eq = e.indexOf('=');
    m.set(eq < 0 ? e : e.slice(0, eq), eq < 0 ? '' : e.slice(eq + 1));
  }
  return m;
}

function mapDiff(kind: string, a: Map<string, string>, b: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of b) {
    if (!a.has(k)) out.push(`${kind} ${k} added (${v})`);
    else if (a.get(k) !== v) out.push(`${kind} ${k} changed (${a.get(k)} → ${v})`);
  }
  for (const [k, v] of a) if (!b.has(k)) out.push(`${kind} ${k} removed (was ${v})`);
  return out;
}

const oct = (m: number) => `0${(m & 0o7777).toString(8).padStart(3, '0')}`;

/** What changed among the files a COPY/ADD selected. */
function entriesDiff(a: DigestEntry[][], b: DigestEntry[][], aSources: string[] | undefined, bSources: string[] | undefined): string[] {
  // Entries are named by their path in the build context (`src/app.ts`), not in their source.
  const flat = (lists: DigestEntry[][], sources: string[] | undefined) => {
    const m = new Map<string, DigestEntry>();
    lists.forEach((list, i) => list.forEach((e) => {
      const src = sources?.[i]?.replace(/\/+$/, '') || sources?.[i];
      const inCtx = e.type === 'file' && list.length === 1 && e.path !== '.' ? e.path
        : src === undefined || src === '.' ? e.path : e.path === '.' ? src : `${src}/${e.path}`;
      m.set(inCtx, e);
    }));
    return m;
  };
  const old = flat(a, aSources);
  const cur = flat(b, bSources);
  const name = (p: string) => p;
  const out: string[] = [];
  const removed = [...old.keys()].filter((p) => !cur.has(p));
  const added = [...cur.keys()].filter((p) => !old.has(p));
  // A removed and an added file with the same content is a rename.
  for (const r of [...removed]) {
    const re = old.get(r)!;
    const match = added.find((p) => {
      const e = cur.get(p)!;
      return e.type === re.type && e.hash === re.hash && e.link === re.link && e.type !== 'dir';
    });
    if (match) {
      out.push(`${name(r)} renamed to ${name(match)}`);
      removed.splice(removed.indexOf(r), 1);
      added.splice(added.indexOf(match), 1);
    }
  }
  for (const p of added) out.push(`${cur.get(p)!.type === 'dir' ? 'folder' : 'file'} ${name(p)} added`);
  for (const p of removed) out.push(`${old.get(p)!.type === 'dir' ? 'folder' : 'file'} ${name(p)} removed`);
  for (const [p, e] of cur) {
    const o = old.get(p);
    if (!o) continue;
    if (o.type !== e.type) out.push(`${name(p)} changed from ${o.type} to ${e.type}`);
    else if (o.hash !== e.hash) out.push(`content of ${name(p)} changed`);
    else if (o.link !== e.link) out.push(`link target of ${name(p)} changed (${o.link} → ${e.link})`);
    if (o.type === e.type && o.mode !== e.mode) out.push(`mode of ${name(p)} changed ${oct(o.mode)} → ${oct(e.mode)}`);
  }
  return out;
}

const shellText = (c: ContainerConfigJson) => (c.Shell ?? ['/bin/sh', '-c']).join(' ');

/** What differs between two run configs, in Dockerfile terms. */
function configDiff(a: ContainerConfigJson, b: ContainerConfigJson): string[] {
  const out = mapDiff('ENV', envMap(a.Env), envMap(b.Env));
  if ((a.WorkingDir || '/') !== (b.WorkingDir || '/')) out.push(`WORKDIR changed (${a.WorkingDir || '/'} → ${b.WorkingDir || '/'})`);
  if ((a.User || 'root') !== (b.User || 'root')) out.push(`USER changed (${a.User || 'root'} → ${b.User || 'root'})`);
  if (shellText(a) !== shellText(b)) out.push(`SHELL changed (${shellText(a)} → ${shellText(b)})`);
  out.push(...mapDiff('LABEL', new Map(Object.entries(a.Labels ?? {})), new Map(Object.entries(b.Labels ?? {}))));
  return out;
}

function summarize(reasons: string[]): string {
  // `COPY: a`, `COPY: b` read as `COPY: a; b`.
  const merged: string[] = [];
  for (const r of reasons) {
    const m = /^(COPY|ADD): (.*)$/.exec(r);
    const last = merged[merged.length - 1];
    if (m && last?.startsWith(`${m[1]}: `)) merged[merged.length - 1] = `${last}; ${m[2]}`;
    else merged.push(r);
  }
  const parts = merged.join('; ').split('; ');
  if (parts.length <= 2) return merged.join('; ');
  const head = parts.slice(0, 2).join('; ');
  return `${head} (+${parts.length - 2} more)`;
}

/**
 * Explains a cache miss by comparing this step's key preimage with the most recent one
 * recorded for the same step. Returns the text after `Cache miss: `; the most upstream cause
 * wins (a rebuilt parent explains everything below it).
 */
export function explainMiss(prev: Preimage | undefined, cur: Preimage, ctx: ExplainContext): string {
  return summarize(missReasons(prev, cur, ctx));
}

/** Every input that differs (most upstream first), one phrase each; `explainMiss` shortens the list. */
export function missReasons(prev: Preimage | undefined, cur: Preimage, ctx: ExplainContext): string[] {
  const one = (r: string) => [r];
  if (!prev) return one('no earlier build of this step');
  const link = (p: Preimage) => (p.extra as { link?: boolean } | null)?.link === true;
  if (link(prev) !== link(cur)) return one(link(cur) ? '--link added: the layer no longer depends on the parent' : '--link removed: the layer depends on the parent again');
  if (prev.parent !== cur.parent) {
    if (ctx.parentRebuiltStep !== undefined) return one(`parent rebuilt (step ${ctx.parentRebuiltStep})`);
    if (ctx.parentRelinkedStep !== undefined) return one(`parent re-stacked (step ${ctx.parentRelinkedStep}: its COPY --link layer was reused on the new base)`);
    if (ctx.firstInStage) return one(`base image changed (${short(prev.parent)} → ${short(cur.parent)})`);
    return one(`parent changed (${short(prev.parent)} → ${short(cur.parent)})`);
  }
  const reasons: string[] = [];
  const pa = splitArgs(prev.config.Cmd);
  const ca = splitArgs(cur.config.Cmd);
  reasons.push(...mapDiff('ARG', pa.args, ca.args));
  const instrChanged = JSON.stringify(pa.rest) !== JSON.stringify(ca.rest);
  const isCopy = cur.extra?.entries !== undefined || prev.extra?.entries !== undefined;
  if (isCopy && prev.extra?.entries && cur.extra?.entries) {
    const kind = /#\(nop\) (COPY|ADD) /.exec(ca.rest.join(' '))?.[1] ?? 'COPY';
    const ps = prev.extra.sources;
    const cs = cur.extra.sources;
    if (ps && cs && ps.join('\0') !== cs.join('\0')) {
      // Other sources named: comparing their files would only list every file as changed.
      reasons.push(`${kind} sources changed (${ps.join(' ')} → ${cs.join(' ')})`);
    } else {
      const files = entriesDiff(prev.extra.entries, cur.extra.entries, ps, cs);
      if (files.length) reasons.push(...files.map((f) => `${kind}: ${f}`));
    }
    const chown = (c: string[]) => /--chown=(\S*?)(?:file|dir|multi):/.exec(c.join(' '))?.[1] ?? '';
    if (chown(pa.rest) !== chown(ca.rest)) reasons.push(`${kind} --chown changed (${chown(pa.rest) || 'none'} → ${chown(ca.rest) || 'none'})`);
    if ((prev.extra.chmod ?? null) !== (cur.extra.chmod ?? null)) reasons.push(`${kind} --chmod changed`);
    if (prev.extra.dest !== cur.extra.dest) reasons.push(`${kind} destination changed (${prev.extra.dest} → ${cur.extra.dest})`);
  } else if (instrChanged) {
    // A metadata step or WORKDIR: say what it now sets, else show the instruction.
    const effect = configDiff(prev.result, cur.result);
    reasons.push(...(effect.length ? effect : [`instruction changed (${pa.rest.join(' ').replace(/^.*#\(nop\) +/, '')} → ${ca.rest.join(' ').replace(/^.*#\(nop\) +/, '')})`]));
  }
  if (!instrChanged || isCopy) reasons.push(...configDiff(prev.config, cur.config));
  if ((prev.extra?.network ?? '') !== (cur.extra?.network ?? '')) reasons.push(`network mode changed (${prev.extra?.network} → ${cur.extra?.network})`);
  if (reasons.length === 0) {
    // Something else of the run config changed (labels, exposed ports, volumes ...).
    const keys = (Object.keys(cur.config) as Array<keyof ContainerConfigJson>).filter((k) => JSON.stringify(prev.config[k] ?? null) !== JSON.stringify(cur.config[k] ?? null));
    return one(keys.length ? `${keys.join(', ')} changed` : 'cache key inputs changed');
  }
  return reasons;
}
