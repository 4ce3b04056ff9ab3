/**
 * Docker's *familiar* form of an image name, which is how the store's `repositories` spells
 * names: `docker.io/library/foo:1` and `library/foo:1` become `foo:1`, `docker.io/user/foo`
 * becomes `user/foo`. The CLI sends normalized names for `tag`'s `repo`, and users may type
 * either form anywhere. Ids, id prefixes and other registries pass through unchanged.
 */
export function familiarName(name: string): string {
  let rest = name;
  for (const domain of ['docker.io/', 'index.docker.io/', 'registry-1.docker.io/']) {
    if (rest.startsWith(domain)) {
      rest = rest.slice(domain.length);
      break;
    }
  }
  if (rest.startsWith('library/') && !rest.slice('library/'.length).includes('/')) rest = rest.slice('library/'.length);
  return rest;
}
