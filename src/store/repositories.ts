import fs from 'node:fs/promises';
import { StoreLayout, type ImageId } from './layout.js';
import { writeFileAtomic, withLock } from '../fs.js';

/** The seed's `repositories` file: repository -> tag -> image id. */
export interface RepositoriesJson {
  Repositories: Record<string, Record<string, string>>;
}

/** Reads `repositories` (an empty set when the store is new). */
export async function readRepositories(layout: StoreLayout): Promise<RepositoriesJson> {
  try {
    const parsed = JSON.parse(await fs.readFile(layout.repositories, 'utf8')) as Partial<RepositoriesJson>;
    return { Repositories: parsed.Repositories ?? {} };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { Repositories: {} };
    throw e;
  }
}

/**
 * Read-modify-write of `repositories` under the store's lock, written atomically, so two
 * processes tagging at once never lose a tag. `fn` mutates the object it is given.
 */
export async function updateRepositories<T>(layout: StoreLayout, fn: (r: RepositoriesJson) => T | Promise<T>): Promise<T> {
  return withLock(layout.lock('repositories'), async () => {
    const repos = await readRepositories(layout);
    const result = await fn(repos);
    const sorted: RepositoriesJson = { Repositories: {} };
    for (const name of Object.keys(repos.Repositories).sort()) {
      const tags = repos.Repositories[name]!;
      if (Object.keys(tags).length === 0) continue;
      sorted.Repositories[name] = Object.fromEntries(Object.keys(tags).sort().map((t) => [t, tags[t]!]));
    }
    await writeFileAtomic(layout.repositories, JSON.stringify(sorted, null, 2) + '\n', 0o600);
    return result;
  });
}

/** All `[repository, tag, id]` triples. */
export function listTags(repos: RepositoriesJson): Array<{ repository: string; tag: string; id: ImageId }> {
  const out: Array<{ repository: string; tag: string; id: ImageId }> = [];
  for (const [repository, tags] of Object.entries(repos.Repositories)) {
    for (const [tag, id] of Object.entries(tags)) out.push({ repository, tag, id: id as ImageId });
  }
  return out;
}
