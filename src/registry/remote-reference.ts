import { SlipwayError } from '../errors.js';
import { parseReference } from '../store/reference.js';

/** The default index's name, as Docker spells it in references. */
export const DEFAULT_INDEX = 'docker.io';
/** Where the default index's registry API lives. */
export const DEFAULT_INDEX_API = 'registry-1.docker.io';
/** The key Docker files the default index's credentials under. */
export const DEFAULT_INDEX_AUTH_KEY = 'https://index.docker.io/v1/';

/** A reference to an image in a registry: `[HOST/]PATH[:TAG][@DIGEST]`. */
export interface RemoteReference {
  /** The registry as written (`127.0.0.1:5000`, `localhost`), or `docker.io` for the default index. */
  registry: string;
  /** The repository on the registry: `thoward/scooby_snacks`; on the default index `library/busybox`. */
  path: string;
  /** The tag, when one was written or implied (`latest` when neither a tag nor a digest is given). */
  tag: string | undefined;
  /** `sha256:<hex>` when the reference pins a digest. */
  digest: string | undefined;
  /** The repository name in the local store: `127.0.0.1:5000/thoward/scooby_snacks`, `busybox`. */
  localName: string;
  /** True for a one-component name on the default index (Docker's "root" repository). */
  root: boolean;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

/** True when a name's first component names a registry host (Docker's rule). */
export function isRegistryHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost';
}

/**
 * Parses a pull/push reference the way Docker normalizes it: the first component is the
 * registry when it has a `.` or `:` or is `localhost`; otherwise the default index, where a
 * one-component name lives under `library/`. `docker.io/` and `library/` are dropped again for
 * the local name, so `docker.io/library/busybox` and `busybox` are the same local repository.
 */
export function parseRemoteReference(ref: string): RemoteReference {
  let name = ref;
  let digest: string | undefined;
  const at = ref.indexOf('@');
  if (at >= 0) {
    digest = ref.slice(at + 1);
    name = ref.slice(0, at);
    if (!DIGEST.test(digest)) throw new SlipwayError('ERR_INVALID_REFERENCE', `invalid reference format: ${JSON.stringify(ref)} (digests are sha256:<64 hex>)`);
  }
  const parsed = parseReference(name);
  const slash = name.lastIndexOf('/');
  const explicitTag = name.lastIndexOf(':') > slash;
  const parts = parsed.repository.split('/');
  let registry = DEFAULT_INDEX;
  if (parts.length > 1 && isRegistryHost(parts[0]!)) registry = parts.shift()!;
  if (registry === 'index.docker.io' || registry === DEFAULT_INDEX_API) registry = DEFAULT_INDEX;
  const root = registry === DEFAULT_INDEX && parts.length === 1;
  if (root) parts.unshift('library');
  const repoPath = parts.join('/');
  const localName = registry === DEFAULT_INDEX ? repoPath.replace(/^library\/(?=[^/]+$)/, '') : `${registry}/${repoPath}`;
  const tag = explicitTag || !digest ? parsed.tag : undefined;
  return { registry, path: repoPath, tag, digest, localName, root };
}

/** `HOST/PATH`, the registry-qualified repository (Docker's SourceRepository). */
export function qualifiedRepository(r: Pick<RemoteReference, 'registry' | 'path'>): string {
  return `${r.registry}/${r.path}`;
}

/** The local `name:tag` a reference is stored under (digest-only references have none). */
export function localTag(r: RemoteReference): string | undefined {
  return r.tag === undefined ? undefined : `${r.localName}:${r.tag}`;
}

/** The registry part of a search term or login argument, and the rest. */
export function splitRegistry(term: string): { registry: string; rest: string } {
  const slash = term.indexOf('/');
  if (slash > 0 && isRegistryHost(term.slice(0, slash))) return { registry: normalizeRegistry(term.slice(0, slash)), rest: term.slice(slash + 1) };
  return { registry: DEFAULT_INDEX, rest: term };
}

/** A registry as `login` accepts it: a host, `https://host/`, or Docker Hub's aliases. */
export function normalizeRegistry(input: string | undefined): string {
  if (!input) return DEFAULT_INDEX;
  let host = input.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  if (host === 'index.docker.io' || host === DEFAULT_INDEX_API || host === DEFAULT_INDEX) host = DEFAULT_INDEX;
  if (!/^[A-Za-z0-9.-]+(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$/.test(host)) {
    throw new SlipwayError('ERR_INVALID_REFERENCE', `invalid registry address: ${JSON.stringify(input)}`);
  }
  return host;
}
