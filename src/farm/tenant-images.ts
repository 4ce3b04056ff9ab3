import { SlipwayError } from '../errors.js';
import type { Credentials } from '../registry/client.js';
import { pullImage } from '../registry/pull.js';
import { parseReference } from '../store/reference.js';
import { resolveImage } from '../store/graph.js';
import { updateRepositories } from '../store/repositories.js';
import type { StoreLayout } from '../store/layout.js';
import { imagePrefix } from './namespace.js';

/**
 * The name a tenant's tag has in the farm's registry: `<registry>/<tenant>/<tag>` (the default
 * tenant's: `<registry>/<tag>`). A tag that already names the farm's registry is put inside the
 * tenant's namespace all the same, so no tag can reach another tenant's repositories.
 */
export function farmImageName(registry: string, tenant: string, tag: string): string {
  const first = tag.split('/')[0]!;
  const rest = first === registry ? tag.slice(first.length + 1) : tag;
  return `${registry}/${imagePrefix(tenant)}${rest}`;
}

/** Codes a pull reports for a user's mistake rather than an infrastructure fault. */
const NOT_THERE = new Set(['ERR_IMAGE_NOT_FOUND', 'ERR_INVALID_REFERENCE']);

/**
 * A FROM image a tenant's store lacks: looked up in the tenant's namespace of the farm's
 * registry, then in the operator's shared one (public base images), pulled, and tagged under
 * the name the Dockerfile uses. False only when neither has it (the user's error); an
 * unreachable registry throws, so the job is retried rather than failed as the user's fault.
 */
export async function fetchTenantBase(opts: { layout: StoreLayout; registry: string; credentials: Credentials | undefined; tenant: string; shared: string | undefined; ref: string }): Promise<boolean> {
  const spaces = opts.shared !== undefined && opts.shared !== opts.tenant ? [opts.tenant, opts.shared] : [opts.tenant];
  for (const space of spaces) {
    const qualified = farmImageName(opts.registry, space, opts.ref);
    try {
      await pullImage({ layout: opts.layout, ref: qualified, insecureRegistries: [opts.registry], credentials: opts.credentials });
    } catch (e) {
      if (e instanceof SlipwayError && NOT_THERE.has(e.code)) continue;
      throw e instanceof SlipwayError && e.code !== 'ERR_REGISTRY' && e.code !== 'ERR_UNAUTHORIZED' ? new SlipwayError('ERR_REGISTRY', `pulling ${qualified}: ${e.message}`) : e;
    }
    const r = parseReference(opts.ref);
    const q = parseReference(qualified);
    const pulled = await resolveImage(opts.layout, `${q.repository}:${q.tag}`);
    await updateRepositories(opts.layout, (repos) => { (repos.Repositories[r.repository] ??= {})[r.tag] = pulled; });
    return true;
  }
  return false;
}
