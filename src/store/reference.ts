import { SlipwayError } from '../errors.js';

/** A parsed `name[:tag]` image reference. */
export interface Reference {
  repository: string;
  tag: string;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const HOST = /^(?:localhost|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::[0-9]+)?$/;

/**
 * Parses `repo[:tag]` by Docker's grammar (a registry host with a port may lead the name;
 * the tag is what follows the last `:` after the last `/`). The tag defaults to `latest`.
 * A bad reference gets Docker's `invalid reference format` with the reason that fits:
 * "repository name must be lowercase" only when lowercasing would make it valid.
 */
export function parseReference(ref: string): Reference {
  const r = tryParse(ref);
  if (typeof r !== 'string') return r;
  if (r === TOO_LONG) throw invalidReference('repository name must not be more than 255 characters');
  if (typeof tryParse(ref.toLowerCase()) !== 'string') throw invalidReference('repository name must be lowercase');
  throw invalidReference(`${JSON.stringify(ref)}: ${r}`);
}

const TOO_LONG = 'too long';

function invalidReference(detail: string): SlipwayError {
  return new SlipwayError('ERR_INVALID_REFERENCE', `invalid reference format: ${detail}`);
}

/** The reference, or why it is not one. */
function tryParse(ref: string): Reference | string {
  if (ref.length === 0) return 'the name is empty';
  if (ref.length > 255) return TOO_LONG;
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  let repository = ref;
  let tag = 'latest';
  if (colon > slash) {
    repository = ref.slice(0, colon);
    tag = ref.slice(colon + 1);
  }
  if (tag === '') return "the tag after ':' is empty";
  if (!TAG.test(tag)) return "a tag is up to 128 letters, digits, '_', '.' or '-', and starts with a letter, digit or '_'";
  const parts = repository.split('/');
  const first = parts[0]!;
  const hasHost = parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost');
  const components = hasHost ? parts.slice(1) : parts;
  if (hasHost && !HOST.test(first)) return `${JSON.stringify(first)} is not a registry host[:port]`;
  if (components.length === 0 || !components.every((c) => COMPONENT.test(c))) {
    return repository.includes(':') ? "':' may appear only once, before the tag" : "a repository name is lowercase letters and digits, separated by '.', '_', '__', '-' or '/'";
  }
  return { repository, tag };
}

/** `repo:tag` */
export function formatReference(r: Reference): string {
  return `${r.repository}:${r.tag}`;
}
