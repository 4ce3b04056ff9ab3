import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { extract, type Header } from 'tar-stream';

/** One tar entry of a layer, or one path of a filesystem, as the conformance corpus records it. */
export interface EntryJson {
  path: string;
  type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'whiteout' | 'opaque';
  mode?: string;
  uid?: number;
  gid?: number;
  size?: number;
  sha256?: string;
  link?: string;
  rdev?: string;
  implied?: boolean;
  text?: string;
}

/** The corpus's view of a built image: twelve config fields, history after the base, layers, fs diff. */
export interface NormalizedImageJson {
  config: Record<string, unknown>;
  history: { created_by: string | null; empty_layer: boolean }[];
  layers: EntryJson[][];
  fs: { added: EntryJson[]; modified: EntryJson[]; removed: string[] };
}

/** The config fields the corpus records, in its order. */
export const CONFIG_FIELDS = [
  'Env', 'Cmd', 'Entrypoint', 'WorkingDir', 'User', 'ExposedPorts',
  'Volumes', 'Labels', 'StopSignal', 'Healthcheck', 'Shell', 'OnBuild',
] as const;

/** The entry fields that say what a path is (everything but `path`, `implied` and `text`). */
export const ENTRY_ATTRS = ['type', 'mode', 'uid', 'gid', 'size', 'sha256', 'link', 'rdev'] as const;

const TEXT_MAX = 256;
const WHITEOUT = '.wh.';
const OPAQUE = '.wh..wh..opq';

/** Orders strings by their UTF-8 bytes, the order the corpus sorts paths in. */
export function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** A tar member name as a corpus path: no leading `/` or `./`, no trailing `/`, root is `.`. */
export function cleanPath(name: string): string {
  const p = posix.normalize(`/${name}`).replace(/^\/+/, '').replace(/\/+$/, '');
  return p === '' ? '.' : p;
}

type PaxHeader = Header & { pax?: Record<string, string> | null };

/** Every member of a tar held in memory, in tar order (bodies only for regular files). */
async function readTar(buf: Buffer): Promise<{ header: PaxHeader; body: Buffer }[]> {
  const out: { header: PaxHeader; body: Buffer }[] = [];
  const ex = extract();
  Readable.from([buf]).pipe(ex as unknown as NodeJS.WritableStream);
  for await (const entry of ex) {
    const chunks: Buffer[] = [];
    for await (const c of entry) chunks.push(c as Buffer);
    out.push({ header: entry.header as PaxHeader, body: Buffer.concat(chunks) });
  }
  return out;
}

/** tar-stream applies PAX path, linkpath and size itself; owners we take from PAX here. */
function paxNumber(h: PaxHeader, key: 'uid' | 'gid'): number {
  const v = h.pax?.[key];
  return v !== undefined ? Number.parseInt(v, 10) : (h[key] ?? 0);
}

function utf8Text(body: Buffer): string | undefined {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(body);
  } catch {
    return undefined;
  }
}

/** A layer (plain or gzip tar) as corpus entries, in tar order, duplicates included. */
export async function readLayer(blob: Buffer): Promise<EntryJson[]> {
  if (blob[0] === 0x28 && blob[1] === 0xb5 && blob[2] === 0x2f && blob[3] === 0xfd) {
    throw new Error('zstd-compressed layers are not supported');
  }
  const plain = blob[0] === 0x1f && blob[1] === 0x8b ? gunzipSync(blob) : blob;
  const entries: EntryJson[] = [];
  for (const { header: h, body } of await readTar(plain)) {
    const path = cleanPath(h.name);
    const base = posix.basename(path);
    if (base === OPAQUE) { entries.push({ path, type: 'opaque' }); continue; }
    if (base.startsWith(WHITEOUT)) { entries.push({ path, type: 'whiteout' }); continue; }
    if (h.type === 'link') { entries.push({ path, type: 'hardlink', link: cleanPath(h.linkname ?? '') }); continue; }
    const e: EntryJson = {
      path, type: 'file',
      mode: ((h.mode ?? 0) & 0o7777).toString(8).padStart(4, '0'),
      uid: paxNumber(h, 'uid'), gid: paxNumber(h, 'gid'),
    };
    switch (h.type) {
      case 'file': case 'contiguous-file': {
        e.size = body.length;
        e.sha256 = createHash('sha256').update(body).digest('hex');
        const text = body.length <= TEXT_MAX ? utf8Text(body) : undefined;
        if (text !== undefined) e.text = text;
        break;
      }
      case 'directory': e.type = 'dir'; break;
      case 'symlink': e.type = 'symlink'; e.link = h.linkname ?? ''; break;
      case 'character-device': case 'block-device':
        e.type = h.type === 'character-device' ? 'char' : 'block';
        e.rdev = `${h.devmajor ?? 0}:${h.devminor ?? 0}`;
        break;
      case 'fifo': e.type = 'fifo'; break;
      default: throw new Error(`unsupported tar entry type ${String(h.type)} for ${h.name}`);
    }
    entries.push(e);
  }
  return entries;
}

/**
 * One layer's listing: last entry per path wins, sorted by path, and each hard-link group
 * rewritten so its byte-smallest path is the `file` and the others link to it, whatever
 * member the tar happened to store the body under.
 */
export function canonicalLayer(raw: EntryJson[]): EntryJson[] {
  const byPath = new Map(raw.map((e) => [e.path, e]));
  const rootOf = (p: string): string => {
    const seen = new Set<string>();
    let cur = p;
    for (let e = byPath.get(cur); e?.type === 'hardlink' && !seen.has(cur); e = byPath.get(cur)) {
      seen.add(cur);
      cur = e.link ?? '';
    }
    return cur;
  };
  const groups = new Map<string, Set<string>>();
  for (const e of byPath.values()) {
    if (e.type !== 'hardlink') continue;
    const root = rootOf(e.path);
    const g = groups.get(root) ?? new Set([root]);
    g.add(e.path);
    groups.set(root, g);
  }
  const out = new Map(byPath);
  for (const [root, members] of groups) {
    const first = [...members].sort(byteOrder)[0]!;
    const target = byPath.get(root);
    if (target?.type === 'file') out.set(first, { ...target, path: first });
    for (const p of members) if (p !== first) out.set(p, { path: p, type: 'hardlink', link: first });
  }
  return [...out.keys()].sort(byteOrder).map((p) => ({ ...out.get(p)! }));
}

type TreeEntry = EntryJson & { ino?: number };

/** A filesystem assembled from layers with whiteout semantics; files carry an inode so hard links stay linked. */
class Tree {
  readonly paths = new Map<string, TreeEntry>([['.', rootDir('.')]]);
  private nextIno = 1;

  /** Drops `path` and everything under it. */
  drop(path: string, keepSelf = false): void {
    const prefix = path === '.' ? '' : `${path}/`;
    for (const p of [...this.paths.keys()]) {
      if ((p === path && !keepSelf) || (p !== '.' && p !== path && p.startsWith(prefix))) this.paths.delete(p);
    }
  }

  /** Applies one layer: its whiteouts hide only what lies below it, so they go first. */
  apply(raw: EntryJson[]): void {
    for (const e of raw) {
      if (e.type === 'opaque') this.drop(parentOf(e.path), true);
      else if (e.type === 'whiteout') {
        this.drop(posix.join(parentOf(e.path), posix.basename(e.path).slice(WHITEOUT.length)));
      }
    }
    for (const e of raw) {
      if (e.type === 'opaque' || e.type === 'whiteout') continue;
      if (e.path !== '.') this.makeParents(e.path);
      const old = this.paths.get(e.path);
      if (old && !(old.type === 'dir' && e.type === 'dir')) this.drop(e.path);
      if (e.type === 'hardlink') {
        const target = this.paths.get(e.link ?? '');
        if (!target) throw new Error(`hardlink ${e.path} points to missing ${String(e.link)}`);
        this.paths.set(e.path, { ...target, path: e.path });
        continue;
      }
      const { implied: _implied, ...entry } = e;
      this.paths.set(e.path, e.type === 'file' ? { ...entry, ino: this.nextIno++ } : entry);
    }
  }

  /** Every missing or non-directory ancestor becomes a 0755 root-owned directory, top down. */
  private makeParents(path: string): void {
    const parts = path.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (this.paths.get(dir)?.type === 'dir') continue;
      this.drop(dir);
      this.paths.set(dir, rootDir(dir));
    }
  }

  /** path -> entry, hard-link groups written as the smallest path plus `hardlink`s to it. */
  snapshot(): Map<string, EntryJson> {
    const byIno = new Map<number, string[]>();
    for (const [p, e] of this.paths) if (e.ino !== undefined) byIno.set(e.ino, [...(byIno.get(e.ino) ?? []), p]);
    const out = new Map<string, EntryJson>();
    for (const [p, { ino, ...e }] of this.paths) {
      const group = ino === undefined ? [] : byIno.get(ino) ?? [];
      const first = group.length > 1 ? group.sort(byteOrder)[0]! : p;
      out.set(p, first === p ? e : { path: p, type: 'hardlink', link: first });
    }
    return out;
  }
}

function rootDir(path: string): EntryJson {
  return { path, type: 'dir', mode: '0755', uid: 0, gid: 0 };
}

function parentOf(path: string): string {
  const d = posix.dirname(path);
  return d === '' ? '.' : d;
}

function sameAttrs(a: EntryJson, b: EntryJson): boolean {
  return ENTRY_ATTRS.every((k) => (a[k] ?? null) === (b[k] ?? null));
}

/** The final filesystem against the base: added, modified, and the topmost removed paths. */
function fsDiff(base: Map<string, EntryJson>, final: Map<string, EntryJson>): NormalizedImageJson['fs'] {
  const fs: NormalizedImageJson['fs'] = { added: [], modified: [], removed: [] };
  for (const p of [...final.keys()].sort(byteOrder)) {
    const now = final.get(p)!;
    const before = base.get(p);
    if (!before) fs.added.push(now);
    else if (!sameAttrs(before, now)) fs.modified.push(now);
  }
  for (const p of [...base.keys()].sort(byteOrder)) {
    if (!final.has(p) && final.get(parentOf(p))?.type === 'dir') fs.removed.push(p);
  }
  return fs;
}

interface SavedImage { config: Record<string, unknown>; layers: Buffer[] }

/** Reads a docker-save tar (legacy `manifest.json` layout or OCI `index.json` layout). */
async function readSavedImage(file: string): Promise<SavedImage> {
  const files = new Map<string, Buffer>();
  const links = new Map<string, string>();
  for (const { header: h, body } of await readTar(await readFile(file))) {
    const name = cleanPath(h.name);
    if (h.type === 'file' || h.type === 'contiguous-file') files.set(name, body);
    // docker save links a repeated layer to its first copy
    else if (h.type === 'symlink') links.set(name, cleanPath(posix.join(posix.dirname(name), h.linkname ?? '')));
    else if (h.type === 'link') links.set(name, cleanPath(h.linkname ?? ''));
  }
  for (const [name, first] of links) {
    const seen = new Set([name]);
    let target = first;
    while (links.has(target) && !seen.has(target)) { seen.add(target); target = links.get(target)!; }
    const body = files.get(target);
    if (body) files.set(name, body);
  }
  const need = (name: string): Buffer => {
    const b = files.get(name);
    if (!b) throw new Error(`${file} has no ${name}`);
    return b;
  };
  const json = (name: string): Record<string, unknown> => JSON.parse(need(name).toString('utf8')) as Record<string, unknown>;
  if (files.has('manifest.json')) {
    const [entry] = JSON.parse(need('manifest.json').toString('utf8')) as { Config: string; Layers: string[] }[];
    if (!entry) throw new Error(`${file}: manifest.json is empty`);
    return { config: json(cleanPath(entry.Config)), layers: entry.Layers.map((l) => need(cleanPath(l))) };
  }
  const blob = (digest: string): string => `blobs/${digest.replace(':', '/')}`;
  type Desc = { digest: string };
  let doc = json('index.json') as { manifests?: Desc[]; config?: Desc; layers?: Desc[] };
  // an index inside the index: take its first manifest, as docker load would
  while (doc.manifests) doc = json(blob(doc.manifests[0]!.digest)) as typeof doc;
  return { config: json(blob(doc.config!.digest)), layers: (doc.layers ?? []).map((l) => need(blob(l.digest))) };
}

/** A saved image as the corpus records it; the first `baseLayers` layers belong to the base image. */
export async function normalizeImage(saveTar: string, baseLayers: number): Promise<NormalizedImageJson> {
  const { config, layers } = await readSavedImage(saveTar);
  if (baseLayers > layers.length) throw new Error(`image has ${layers.length} layers, fewer than ${baseLayers}`);
  const cfg = (config['config'] ?? {}) as Record<string, unknown>;
  const history = (config['history'] ?? []) as { created_by?: string; empty_layer?: boolean }[];
  // skip the history up to and including the entry of the base's last layer
  let skip = 0;
  for (let seen = 0; seen < baseLayers && skip < history.length; skip++) if (!history[skip]!.empty_layer) seen++;

  const tree = new Tree();
  let base: Map<string, EntryJson> | undefined;
  const out: EntryJson[][] = [];
  for (const [n, blob] of layers.entries()) {
    if (n === baseLayers) base = tree.snapshot();
    const raw = await readLayer(blob);
    if (n >= baseLayers) {
      out.push(canonicalLayer(raw).map((e) => {
        const below = tree.paths.get(e.path);
        const implied = e.type === 'dir' && below?.type === 'dir'
          && below.mode === e.mode && below.uid === e.uid && below.gid === e.gid;
        return implied ? { ...e, implied: true } : e;
      }));
    }
    tree.apply(raw);
  }
  return {
    config: Object.fromEntries(CONFIG_FIELDS.map((k) => [k, cfg[k] ?? null])),
    history: history.slice(skip).map((h) => ({ created_by: h.created_by ?? null, empty_layer: Boolean(h.empty_layer) })),
    layers: out,
    fs: fsDiff(base ?? tree.snapshot(), tree.snapshot()),
  };
}
