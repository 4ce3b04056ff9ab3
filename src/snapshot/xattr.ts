/**
 * Extended attributes through a native binding (`@napi-rs/xattr`, prebuilt for Node-API, so
 * no compiler and no `attr` package on the host). The only importer of that package. Every
 * call acts on the path itself, never on a symlink's target (l*xattr), as overlayfs reads its
 * own attributes. Synchronous: each call is one system call against the page cache, cheaper
 * than a thread-pool round trip (layer walks call it once per entry).
 */
import { createRequire } from 'node:module';
import { SlipwayError } from '../errors.js';

type Binding = typeof import('@napi-rs/xattr');
let loaded: Binding | undefined;
/**
 * The native binding, loaded on first use: a build served from the cache walks no layer and
 * never pays for the addon (dlopen and its JS wrapper). A CommonJS package, so it loads
 * synchronously, as every call here is synchronous.
 */
function binding(): Binding {
  loaded ??= createRequire(import.meta.url)('@napi-rs/xattr') as Binding;
  return loaded;
}

/** overlayfs marks a directory that hides the lower layers' contents with this attribute set to `y`. */
export const OPAQUE_XATTR = 'trusted.overlay.opaque';
/** The prefix of every attribute overlayfs keeps for itself (never visible in a merged view). */
export const OVERLAY_XATTR_PREFIX = 'trusted.overlay.';

// errno 61 on Linux: the attribute does not exist.
const NO_DATA = /\(os error 61\)|No data available/;

function failure(op: string, path: string, name: string | undefined, e: unknown): SlipwayError {
  const what = name === undefined ? '' : ` ${name}`;
  return new SlipwayError('ERR_INTERNAL', `${op}${what} on ${path}: ${(e as Error).message}`);
}

/** The attribute names of `path` (all namespaces this process may read). */
export function listXattrs(path: string): string[] {
  try {
    return binding().listAttributesSync(path);
  } catch (e) {
    throw failure('listxattr', path, undefined, e);
  }
}

/** An attribute's value, or undefined when `path` does not carry it. */
export function getXattr(path: string, name: string): Buffer | undefined {
  try {
    return binding().getAttributeSync(path, name) ?? undefined;
  } catch (e) {
    if (NO_DATA.test((e as Error).message)) return undefined;
    throw failure('getxattr', path, name, e);
  }
}

/** Sets an attribute (created or replaced). */
export function setXattr(path: string, name: string, value: string | Uint8Array): void {
  try {
    binding().setAttributeSync(path, name, value);
  } catch (e) {
    throw failure('setxattr', path, name, e);
  }
}

/** Removes an attribute; a path that does not carry it is left as it is. */
export function removeXattr(path: string, name: string): void {
  try {
    binding().removeAttributeSync(path, name);
  } catch (e) {
    if (NO_DATA.test((e as Error).message)) return;
    throw failure('removexattr', path, name, e);
  }
}

/** True when `path` is an overlayfs opaque directory marker (`trusted.overlay.opaque=y`). */
export function isOpaque(path: string): boolean {
  return getXattr(path, OPAQUE_XATTR)?.toString('latin1') === 'y';
}

/** Marks a directory opaque, as overlayfs does for a directory made over a deleted lower one. */
export function markOpaque(path: string): void {
  setXattr(path, OPAQUE_XATTR, 'y');
}
