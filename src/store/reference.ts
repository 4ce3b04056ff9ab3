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
 */
export function parseReference(ref: string): Reference {
  if (ref.length === 0 || ref.length > 255) throw invalid(ref);
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  let repository = ref;
  let tag = 'latest';
  if (colon > slash) {
    repository = ref.slice(0, colon);
    tag = ref.slice(colon + 1);
  }
  if (!TAG.test(tag)) throw invalid(ref);
  const parts = repository.split('/');
  const first = parts[0]!;
  const hasHost = parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost');
  const components = hasHost ? parts.slice(1) : parts;
  if (hasHost && !HOST.test(first)) throw invalid(ref);
  if (components.length === 0 || !components.every((c) => COMPONENT.test(c))) throw invalid(ref);
  return { repository, tag };
}

function invalid(ref: string): SlipwayError {
  return new SlipwayError('ERR_INVALID_REFERENCE', `invalid reference format: ${JSON.stringify(ref)} (repository names must be lowercase)`);
}

/** `repo:tag` */
export function formatReference(r: Reference): string {
  return `${r.repository}:${r.tag}`;
}
