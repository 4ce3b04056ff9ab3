import path from 'node:path';

/**
 * Where each tenant's things live in the farm, spelled in one place. A tenant name is a Redis
 * key component and a registry path component, so it obeys the stricter of the two grammars.
 * The tenant `default` is the operator's (direct `submit` on Redis, the unix socket): its
 * images keep the names they had before tenants existed.
 */
export const TENANT_NAME = /^(?=.{1,63}$)[a-z0-9]+(?:[_-][a-z0-9]+)*$/;
export const DEFAULT_TENANT = 'default';

/** The key prefix of everything the farm keeps in Redis (the workers' ACL user is limited to it). */
export const FARM_PREFIX = 'slipway';

/** Every Redis key of one tenant's cache (records, leases, fencing counter) starts with this. */
export function tenantKeyPrefix(tenant: string): string {
  return `${FARM_PREFIX}:t:${tenant}`;
}

/** The registry repository of a tenant's farm layers. */
export function layerRepo(tenant: string): string {
  return `slipway/${tenant}/layers`;
}

/** The registry repository of a tenant's build contexts. */
export function contextRepo(tenant: string): string {
  return `slipway/${tenant}/contexts`;
}

/**
 * A worker's store for one tenant: the default tenant's is the worker's --root, another's a
 * folder below it, so that a local cache hit can never cross tenants either.
 */
export function tenantRoot(root: string, tenant: string): string {
  return tenant === DEFAULT_TENANT ? root : path.join(root, 'tenants', tenant);
}

/** The repository path prefix of a tenant's images in the farm's registry ('' for the default tenant). */
export function imagePrefix(tenant: string): string {
  return tenant === DEFAULT_TENANT ? '' : `${tenant}/`;
}

/** Refuses a tenant name that could escape its namespace. */
export function checkTenant(tenant: string): string {
  if (!TENANT_NAME.test(tenant)) throw new Error(`invalid tenant ${JSON.stringify(tenant)}: lower-case letters and digits, separated by '_' or '-', at most 63`);
  return tenant;
}
