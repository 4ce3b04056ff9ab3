import type { Command, CommandEnv } from './command-env.js';

/** The registry verbs' help; their code (and the registry client) loads only when one runs. */
const INSECURE_HELP = '      --insecure-registry HOST   Allow plain HTTP to HOST (also SLIPWAY_INSECURE_REGISTRIES=h1,h2)';

type RegistryVerb = 'push' | 'pull' | 'login' | 'logout' | 'search' | 'exportOci';

function lazyRegistry(name: RegistryVerb): Command['run'] {
  return async (args: string[], env: CommandEnv) => {
    const m = await import('./registry-cmds.js');
    return (m[name] as (a: string[], e: CommandEnv) => Promise<number>)(args, env);
  };
}

export const REGISTRY_COMMANDS: Record<string, Command> = {
  push: { usage: '[OPTIONS] NAME[:TAG]', summary: 'Upload an image to a registry', help: `Options:
  -a, --all-tags         Push all tags of the repository
      --format string    docker (schema 2 manifest, default) or oci
      --chunk-size int   Upload blobs larger than this in PATCH chunks of this size (default 16 MiB)
  -q, --quiet            Suppress verbose output
${INSECURE_HELP}`, run: lazyRegistry('push') },
  pull: { usage: '[OPTIONS] NAME[:TAG|@DIGEST]', summary: 'Download an image from a registry', help: `Options:
      --platform string  os/arch[/variant] to pick from a manifest list (default linux/amd64)
  -q, --quiet            Suppress verbose output
${INSECURE_HELP}`, run: lazyRegistry('pull') },
  login: { usage: '[OPTIONS] [SERVER]', summary: 'Log in to a registry', help: `Options:
  -p, --password string   Password
      --password-stdin    Take the password from stdin
  -u, --username string   Username
${INSECURE_HELP}

Credentials are kept in $SLIPWAY_CONFIG/auth.json (default ~/.config/slipway/auth.json, mode 0600).`, run: lazyRegistry('login') },
  logout: { usage: '[SERVER]', summary: 'Log out from a registry', run: lazyRegistry('logout') },
  search: { usage: '[OPTIONS] TERM', summary: 'Search a registry for images ([HOST/]TERM)', help: `Options:
      --limit int   Max number of search results (default 25)
      --no-trunc    Don't truncate output
${INSECURE_HELP}`, run: lazyRegistry('search') },
  'export-oci': { usage: 'IMAGE [IMAGE...] DIR', summary: 'Write images into an OCI image layout folder', run: lazyRegistry('exportOci') },
};
