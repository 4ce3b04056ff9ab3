/**
 * Fuzzing helper: mutated tar archives. `hostileLayer` makes layer tars (for ADD and as the
 * layers of a load archive) from entries that try every trick (`..`, absolute names, links
 * out, devices, whiteouts, duplicates); `mutateArchive` rewrites a real `slipway save`
 * archive: its JSON, its entries, its layers, or its bytes.
 */
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { extract, type Header } from 'tar-stream';
import { makeTar, type Spec } from './tar.js';
import { mutateBytes, type Rng } from './fuzz-random.js';

/** A host path no archive may ever create (checked after every case). */
export const ESCAPE_CANARY = '/tmp/slipway-fuzz-escaped';

const NAMES = ['f', 'd/f', 'd/', '../f', '../../../../../../tmp/slipway-fuzz-escaped', '/tmp/slipway-fuzz-escaped', './f', 'd/../../f', '.wh.f', 'd/.wh..wh..opq', '.wh..wh..opq', 'l/f', 'l/../../x', 'a'.repeat(300), 'd\\f', 'ünï/f', ''];
const LINKS = ['..', '../..', '/', '/tmp', '/tmp/slipway-fuzz-escaped', 'f', 'd', 'l', 'nosuch', '../../../../../tmp', '.'];

/** One entry of a hostile layer. */
function hostileEntry(rng: Rng): Spec {
  const name = rng.pick(NAMES);
  const base = { name, uid: rng.chance(0.8) ? 0 : rng.int(70000), gid: rng.chance(0.8) ? 0 : rng.int(70000), mtime: new Date(rng.chance(0.9) ? 1e12 : rng.pick([0, -1e12, 8e15])) };
  switch (rng.int(9)) {
    case 0: case 1: return { ...base, type: 'file', mode: rng.pick([0o644, 0o755, 0o4755, 0o7777, 0o000]), body: rng.chance(0.9) ? 'x\n' : 'y'.repeat(rng.int(70000)) };
    case 2: return { ...base, type: 'directory', mode: rng.pick([0o755, 0o000, 0o1777]) };
    case 3: case 4: return { ...base, name: rng.pick(['l', 'd', 'f', 'd/l', name]), type: 'symlink', linkname: rng.pick(LINKS), mode: 0o777 };
    case 5: return { ...base, type: 'link', linkname: rng.pick([...LINKS, 'f', 'd/f']) };
    case 6: return { ...base, type: 'character-device', devmajor: rng.pick([0, 1, 8]), devminor: rng.pick([0, 3, 5]), mode: 0o666 };
    case 7: return { ...base, type: rng.pick(['fifo', 'block-device'] as const), mode: 0o644 };
    default: return { ...base, type: 'file', mode: 0o644, body: '' };
  }
}

/** A layer tar of hostile entries; sometimes gzipped, sometimes byte-mutated. */
export async function hostileLayer(rng: Rng): Promise<Buffer> {
  const entries: Spec[] = [];
  if (rng.chance(0.5)) entries.push({ name: 'd', type: 'directory', mode: 0o755 }, { name: 'l', type: 'symlink', linkname: rng.pick(LINKS), mode: 0o777 });
  const n = 1 + rng.int(8);
  for (let i = 0; i < n; i++) entries.push(hostileEntry(rng));
  let tar = await makeTar(entries);
  if (rng.chance(0.25)) tar = mutateBytes(rng, tar);
  if (rng.chance(0.2)) tar = zlib.gzipSync(tar);
  return tar;
}

/** An archive's entries, in order. */
async function readEntries(tar: Buffer): Promise<Array<{ header: Partial<Header> & { name: string }; body: Buffer }>> {
  const out: Array<{ header: Partial<Header> & { name: string }; body: Buffer }> = [];
  const ex = extract();
  const done = (async () => {
    for await (const e of ex) {
      const chunks: Buffer[] = [];
      for await (const c of e) chunks.push(c as Buffer);
      out.push({ header: e.header, body: Buffer.concat(chunks) });
    }
  })();
  ex.end(tar);
  await done;
  return out;
}

const HOSTILE_VALUES: unknown[] = ['../../../../etc/passwd', '/etc/passwd', '', null, 5, [], {}, ['../x'], 'sha256:' + '0'.repeat(64), 'a'.repeat(5000), { $ref: 1 }, true, -1, 'blobs/sha256/../../x'];

/** Sets a random leaf or member of a JSON value to a hostile value (or nests it absurdly deep). */
function mutateJson(rng: Rng, v: unknown, depth = 0): unknown {
  if (rng.chance(0.03)) {
    let deep: unknown = 1;
    for (let i = 0; i < 5000; i++) deep = [deep];
    return deep;
  }
  if (v === null || typeof v !== 'object' || (depth > 0 && rng.chance(0.3))) return rng.pick(HOSTILE_VALUES);
  if (Array.isArray(v)) {
    if (v.length === 0 || rng.chance(0.15)) return [...v, rng.pick(HOSTILE_VALUES)];
    const i = rng.int(v.length);
    if (rng.chance(0.15)) return v.filter((_, j) => j !== i);
    return v.map((x, j) => (j === i ? mutateJson(rng, x, depth + 1) : x));
  }
  const o = { ...(v as Record<string, unknown>) };
  const keys = Object.keys(o);
  if (keys.length === 0 || rng.chance(0.1)) o[rng.pick(['Config', 'Layers', 'SlipwayChain', 'parent', 'id', 'throwaway', 'annotations'])] = rng.pick(HOSTILE_VALUES);
  else {
    const k = rng.pick(keys);
    if (rng.chance(0.15)) delete o[k];
    else o[k] = mutateJson(rng, o[k], depth + 1);
  }
  return o;
}

const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

/** Replaces one layer with a hostile one and makes the config name its diff id (so it is unpacked). */
async function swapLayer(rng: Rng, entries: Array<{ header: Partial<Header> & { name: string }; body: Buffer }>): Promise<void> {
  const layers = entries.filter((e) => e.header.name.endsWith('layer.tar'));
  const configs = entries.filter((e) => /^[0-9a-f]{64}\.json$/.test(e.header.name));
  if (!layers.length) return;
  const layer = rng.pick(layers);
  const old = `sha256:${sha256(layer.body)}`;
  layer.body = await hostileLayer(rng);
  // The diff id names the uncompressed tar, as load computes it.
  let plain = layer.body;
  if (plain[0] === 0x1f && plain[1] === 0x8b) plain = zlib.gunzipSync(plain, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  const fresh = `sha256:${sha256(plain)}`;
  for (const c of configs) c.body = Buffer.from(c.body.toString().split(old).join(fresh));
  layer.header.size = layer.body.length;
}

/** One structural change to the entry list. */
function mutateEntries(rng: Rng, entries: Array<{ header: Partial<Header> & { name: string }; body: Buffer }>): void {
  if (!entries.length) return;
  const e = rng.pick(entries);
  switch (rng.int(7)) {
    case 0: entries.splice(entries.indexOf(e), 1); break;
    case 1: entries.push({ header: { ...e.header }, body: mutateBytes(rng, e.body) }); break;
    case 2: e.header = { ...e.header, name: rng.pick(['../' + e.header.name, '/' + e.header.name, `x/../${e.header.name}`, 'manifest.json', 'index.json', 'oci-layout']) }; break;
    case 3: entries.push({ header: { name: e.header.name, type: 'symlink', linkname: rng.pick([...LINKS, '../../../../etc/passwd', entries[0]!.header.name]), mode: 0o777 }, body: Buffer.alloc(0) }); break;
    case 4: entries.push({ header: { name: rng.pick(['l', 'blobs', 'blobs/sha256', e.header.name.split('/')[0]!]), type: 'symlink', linkname: rng.pick(LINKS), mode: 0o777 }, body: Buffer.alloc(0) }); break;
    case 5: e.header = { ...e.header, type: rng.pick(['directory', 'fifo', 'link', 'character-device'] as const), linkname: rng.pick(LINKS) }; break;
    default: e.body = mutateBytes(rng, e.body);
  }
}

/** A mutated copy of a real `save` archive (docker or OCI format). */
export async function mutateArchive(rng: Rng, seed: Buffer): Promise<Buffer> {
  if (rng.chance(0.15)) return mutateBytes(rng, seed, 1 + rng.int(12));
  const entries = await readEntries(seed);
  const rounds = 1 + rng.int(3);
  for (let r = 0; r < rounds; r++) {
    const kind = rng.int(4);
    if (kind === 0) {
      const json = entries.filter((e) => e.header.name.endsWith('.json') || e.header.name === 'repositories' || /^blobs\/sha256\//.test(e.header.name) && e.body.length < 65536 && e.body[0] === 0x7b);
      if (!json.length) continue;
      const e = rng.pick(json);
      try {
        e.body = Buffer.from(JSON.stringify(mutateJson(rng, JSON.parse(e.body.toString()))));
      } catch {
        e.body = mutateBytes(rng, e.body);
      }
    } else if (kind === 1) await swapLayer(rng, entries);
    else mutateEntries(rng, entries);
  }
  for (const e of entries) if (e.header.type === 'file' || e.header.type === undefined) e.header.size = e.body.length;
  let tar = await makeTar(entries.map((e) => ({ ...e.header, name: e.header.name, ...(e.header.type === 'file' || e.header.type === undefined ? { body: e.body } : {}) })));
  if (rng.chance(0.1)) tar = zlib.gzipSync(tar);
  return tar;
}
