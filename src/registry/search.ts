import { SlipwayError } from '../errors.js';
import { RegistryClient, readCapped, registryError, type Credentials } from './client.js';
import { DEFAULT_INDEX, splitRegistry } from './remote-reference.js';

/** One `search` row, with the Hub's v1 field meanings. */
export interface SearchResult {
  name: string;
  description: string;
  stars: number;
  official: boolean;
  automated: boolean;
}

/** What `searchRegistry` needs. */
export interface SearchOptions {
  /** `TERM` (the default index) or `HOST/TERM` (that registry's catalog). */
  term: string;
  limit?: number;
  credentials?: Credentials | undefined;
  insecureRegistries?: readonly string[];
  /** The default index's search endpoint (overridable for tests). */
  indexSearchUrl?: string;
}

/**
 * `search`: the default index answers through its v1 search API; any other registry through its
 * catalog (`/v2/_catalog`, which needs the `registry:catalog:*` scope), filtered by substring and
 * shown with the registry's host so each name can be pulled as printed.
 */
export async function searchRegistry(opts: SearchOptions): Promise<SearchResult[]> {
  const { registry, rest } = splitRegistry(opts.term);
  const limit = opts.limit ?? 25;
  if (limit < 1 || limit > 100) throw new SlipwayError('ERR_INVALID_OPTION', `limit ${limit} is outside the range of [1, 100]`);
  const client = new RegistryClient({
    registry, credentials: opts.credentials, scopes: ['registry:catalog:*'],
    ...(opts.insecureRegistries ? { insecureRegistries: opts.insecureRegistries } : {}),
  });
  if (registry === DEFAULT_INDEX) {
    const url = new URL(opts.indexSearchUrl ?? 'https://index.docker.io/v1/search');
    url.searchParams.set('q', rest);
    url.searchParams.set('n', String(limit));
    const res = await client.request('GET', url.toString());
    if (!res.ok) throw await registryError(res, `search ${rest}`);
    const body = JSON.parse((await readCapped(res, 4 * 1024 * 1024, 'search results')).toString('utf8')) as { results?: Array<Record<string, unknown>> };
    return (body.results ?? []).slice(0, limit).map((r) => ({
      name: String(r['name'] ?? ''), description: String(r['description'] ?? ''), stars: Number(r['star_count'] ?? 0) || 0,
      official: r['is_official'] === true, automated: r['is_automated'] === true || r['is_trusted'] === true,
    }));
  }
  const needle = rest.toLowerCase();
  const names = (await client.catalog()).filter((n) => n.toLowerCase().includes(needle)).sort();
  return names.slice(0, limit).map((n) => ({ name: `${registry}/${n}`, description: '', stars: 0, official: false, automated: false }));
}
