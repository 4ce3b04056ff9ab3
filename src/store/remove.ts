import { SlipwayError } from '../errors.js';
import { withLock } from '../fs.js';
import { StoreLayout, shortId, type ImageId } from './layout.js';
import { childrenIndex, readImage, removeImageDir, resolveImage } from './graph.js';
import { listTags, readRepositories, updateRepositories } from './repositories.js';
import { parseReference, formatReference } from './reference.js';

/** One line of `rmi` output. */
export type RemoveEvent = { Untagged: string } | { Deleted: string };

/**
 * `rmi` with Docker's semantics: a tag reference untags; an image is deleted once no tag and no
 * child refers to it, and then its untagged parents that nothing else needs go too. An image
 * with children is never deleted; an id with several tags needs `force`.
 */
export async function removeImage(layout: StoreLayout, ref: string, force = false): Promise<RemoveEvent[]> {
  return withLock(layout.lock('graph'), async () => {
    const id = await resolveImage(layout, ref);
    const repos = await readRepositories(layout);
    const tags = listTags(repos).filter((t) => t.id === id);
    let byTag: { repository: string; tag: string } | undefined;
    try {
      const r = parseReference(ref);
      if (repos.Repositories[r.repository]?.[r.tag] === id) byTag = r;
    } catch {
      byTag = undefined;
    }
    const children = await childrenIndex(layout);
    const events: RemoveEvent[] = [];
    let untag: Array<{ repository: string; tag: string }>;
    if (byTag) {
      untag = [byTag];
    } else {
      if ((children.get(id)?.length ?? 0) > 0) {
        throw new SlipwayError('ERR_IMAGE_CONFLICT', `conflict: unable to delete ${shortId(id)} (cannot be forced) - image has dependent child images`);
      }
      if (tags.length > 1 && !force) {
        throw new SlipwayError('ERR_IMAGE_CONFLICT', `conflict: unable to delete ${shortId(id)} (must be forced) - image is referenced in multiple repositories`);
      }
      untag = tags;
    }
    if (untag.length > 0) {
      await updateRepositories(layout, (r) => {
        for (const t of untag) delete r.Repositories[t.repository]?.[t.tag];
      });
      for (const t of untag) events.push({ Untagged: formatReference(t) });
    }
    // Delete the image, then each parent that has become unreferenced.
    const after = await readRepositories(layout);
    const tagged = new Set(listTags(after).map((t) => t.id as string));
    let cur: ImageId | undefined = id;
    while (cur && !tagged.has(cur) && (children.get(cur)?.length ?? 0) === 0) {
      const json = await readImage(layout, cur);
      await removeImageDir(layout, cur);
      events.push({ Deleted: `sha256:${cur}` });
      const parent = json.parent as ImageId | undefined;
      if (parent) children.set(parent, (children.get(parent) ?? []).filter((c) => c !== cur));
      cur = parent;
    }
    return events;
  });
}
