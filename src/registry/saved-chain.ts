import { SlipwayError } from '../errors.js';
import { emptyContainerConfig, type ContainerConfigJson, type ImageJson } from '../image-config.js';
import { isImageId, type ImageId, type StoreLayout } from '../store/layout.js';
import { hasImage, imageChain, readDiffId, readImage } from '../store/graph.js';
import type { ImageConfigDocJson } from '../store/inspect.js';
import { canonicalJson } from '../cache/key.js';

export type HistoryJson = ImageConfigDocJson['history'][number];

/** One image of a planned chain. */
export interface ChainEntry {
  id: ImageId;
  parent: ImageId | undefined;
  history: HistoryJson;
  /** Index into `rootfs.diff_ids` (and the manifest's layers) when the entry has a layer. */
  layerIndex: number | undefined;
  diffId: string;
  last: boolean;
  /** The image's JSON as the archive saved it (see saved-chain.ts); else it is derived from the history entry. */
  json?: ImageJson;
}


/**
 * What `save` adds to an archive so that `load` gives every image back its id. Docker's id is
 * its config's digest, which survives a save and load by itself; Slipway's ids are not (a
 * built step's id covers its cache key, which no archive carries), so the archive names them:
 * each `manifest.json` item gets a `SlipwayChain` list, and each OCI index entry an annotation
 * naming a blob with the same list. The list holds the JSON of every image of the chain, base
 * first, as `graph/<id>/json` keeps it (id, parent, created, container_config, …).
 *
 * Docker, skopeo and umoci ignore both. `load` trusts the ids only as far as it can check
 * them: the list must match the config's history one to one (same layers, same empty layers,
 * each parent the entry before), the top image's config must be the config document's, every
 * layer is still verified against its diff id, and an id the store already has must name the
 * same layer on the same parent (else the load is refused as a conflict).
 */

/** The `manifest.json` item field. */
export const CHAIN_FIELD = 'SlipwayChain';
/** The OCI descriptor annotation: the digest of a blob holding the list. */
export const CHAIN_ANNOTATION = 'io.slipway.image.chain';

/** The list `save` writes for image `id`. */
export async function savedChain(layout: StoreLayout, id: ImageId): Promise<ImageJson[]> {
  return (await imageChain(layout, id)).reverse().map((c) => c.json);
}

function bad(detail: string): SlipwayError {
  return new SlipwayError('ERR_BAD_ARCHIVE', `invalid archive: ${CHAIN_FIELD}: ${detail}`);
}

const STRING_LISTS = ['Env', 'Cmd', 'Entrypoint', 'OnBuild', 'Shell'] as const;
const MAPS = ['Labels', 'ExposedPorts', 'Volumes'] as const;
const STRINGS = ['User', 'WorkingDir', 'StopSignal', 'Hostname', 'Domainname', 'Image'] as const;

/**
 * Checks the fields of an untrusted container config that Slipway reads (a list of strings
 * where a list is expected, and so on), so a hostile archive cannot make a later build crash.
 * Returns a message naming the first bad field, or undefined.
 */
export function badContainerConfig(c: unknown): string | undefined {
  if (c === null || c === undefined) return undefined;
  if (typeof c !== 'object' || Array.isArray(c)) return 'not an object';
  const o = c as Record<string, unknown>;
  for (const k of STRING_LISTS) if (o[k] != null && !(Array.isArray(o[k]) && (o[k] as unknown[]).every((x) => typeof x === 'string'))) return `${k} must be a list of strings`;
  for (const k of MAPS) if (o[k] != null && (typeof o[k] !== 'object' || Array.isArray(o[k]))) return `${k} must be an object`;
  if (o['Labels'] != null && !Object.values(o['Labels'] as object).every((v) => typeof v === 'string')) return 'Labels must map strings to strings';
  for (const k of STRINGS) if (o[k] != null && typeof o[k] !== 'string') return `${k} must be a string`;
  return undefined;
}

function sameConfig(a: ContainerConfigJson | null | undefined, b: ContainerConfigJson | null | undefined): boolean {
  return canonicalJson({ ...emptyContainerConfig(), ...(a ?? {}) }) === canonicalJson({ ...emptyContainerConfig(), ...(b ?? {}) });
}

/** Checks one saved image JSON against the plan entry it stands for and the one before it. */
function checkSavedImage(j: unknown, i: number, plan: readonly ChainEntry[], prev: ImageId | undefined): ImageJson {
  if (j === null || typeof j !== 'object' || Array.isArray(j)) throw bad(`entry ${i} is not an object`);
  const json = j as ImageJson;
  if (typeof json.id !== 'string' || !isImageId(json.id)) throw bad(`entry ${i} has no image id`);
  if ((json.parent ?? undefined) !== prev) throw bad(`image ${json.id.slice(0, 12)} does not follow the entry before it`);
  if ((json.throwaway === true) !== (plan[i]!.layerIndex === undefined)) throw bad(`image ${json.id.slice(0, 12)} does not match the config's history`);
  if (typeof json.created !== 'string') throw bad(`image ${json.id.slice(0, 12)} has no creation time`);
  for (const [field, c] of [['config', json.config], ['container_config', json.container_config]] as const) {
    const why = badContainerConfig(c);
    if (why) throw bad(`image ${json.id.slice(0, 12)}: ${field}: ${why}`);
  }
  return json;
}

/**
 * Gives a planned chain the ids and JSON the archive saved for it, after checking them against
 * the config document. `saved` is the archive's untrusted list.
 */
export function restoreChain(plan: readonly ChainEntry[], doc: ImageConfigDocJson, saved: unknown): ChainEntry[] {
  if (!Array.isArray(saved) || saved.length !== plan.length) throw bad(`it lists ${Array.isArray(saved) ? saved.length : 'no'} images, the config's history ${plan.length}`);
  const seen = new Set<string>();
  const out: ChainEntry[] = [];
  let prev: ImageId | undefined;
  for (let i = 0; i < plan.length; i++) {
    const json = checkSavedImage(saved[i], i, plan, prev);
    if (seen.has(json.id)) throw bad(`image ${json.id.slice(0, 12)} is listed twice`);
    seen.add(json.id);
    out.push({ ...plan[i]!, id: json.id as ImageId, parent: prev, json });
    prev = json.id as ImageId;
  }
  if (!sameConfig(out[out.length - 1]!.json!.config, doc.config)) throw bad('the top image\'s config is not the config document\'s');
  return out;
}

/**
 * Refuses a chain whose ids the store already has for other content (another layer or
 * parent): a forged id must not take over, nor hide behind, an image that exists.
 */
export async function checkAgainstStore(layout: StoreLayout, plan: readonly ChainEntry[]): Promise<void> {
  for (const e of plan) {
    if (!(await hasImage(layout, e.id))) continue;
    const had = await readImage(layout, e.id);
    const diffId = await readDiffId(layout, e.id).catch(() => undefined);
    if ((had.parent ?? undefined) !== e.parent || (diffId !== undefined && diffId !== e.diffId)) {
      throw new SlipwayError('ERR_IMAGE_CONFLICT', `image ${e.id.slice(0, 12)} in the archive has a different layer or parent than the image with that id in the store`);
    }
  }
}
