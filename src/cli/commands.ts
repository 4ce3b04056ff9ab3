import { REGISTRY_COMMANDS } from './registry-verbs.js';

import type { Command, CommandEnv } from './command-env.js';

export type { CommandEnv } from './command-env.js';

export type { Command } from './command-env.js';

type Runner = (args: string[], env: CommandEnv) => Promise<number>;

/** A command body from a module loaded on first use. */
function lazy<M>(load: () => Promise<M>, pick: (m: M) => Runner): Runner {
  return async (args, env) => pick(await load())(args, env);
}
const images = lazy(() => import('./image-cmds.js'), (m) => m.images);
const tag = lazy(() => import('./image-cmds.js'), (m) => m.tag);
const rmi = lazy(() => import('./image-cmds.js'), (m) => m.rmi);
const history = lazy(() => import('./image-cmds.js'), (m) => m.history);
const inspect = lazy(() => import('./image-cmds.js'), (m) => m.inspect);
const importCmd = lazy(() => import('./image-cmds.js'), (m) => m.importCmd);
const save = lazy(() => import('./image-cmds.js'), (m) => m.save);
const load = lazy(() => import('./image-cmds.js'), (m) => m.load);
const buildCommand = lazy(() => import('./build-cmd.js'), (m) => m.buildCommand);
const runCommand = lazy(() => import('./run-cmd.js'), (m) => m.runCommand);
const statsCommand = lazy(() => import('./stats-cmd.js'), (m) => m.statsCommand);
const pruneCommand = lazy(() => import('./prune-cmd.js'), (m) => m.pruneCommand);
const submitCommand = lazy(() => import('./farm-cmds.js'), (m) => m.submitCommand);
const workerCommand = lazy(() => import('./farm-cmds.js'), (m) => m.workerCommand);
const farmCommand = lazy(() => import('./farm-cmds.js'), (m) => m.farmCommand);

/** The sandbox flags of build, run, serve and worker (see src/sandbox/limits.ts). */
const SANDBOX_HELP = `
  -m, --memory bytes      Memory limit per step (e.g. 512m)
      --memory-swap bytes Memory plus swap per step; -1 for unlimited swap (default: twice --memory)
  -c, --cpu-shares int    CPU shares (relative weight)
      --cpu-period int    CFS period, microseconds
      --cpu-quota int     CFS quota per period, microseconds
      --cpuset-cpus list  CPUs a step may use (0-3, 0,1)
      --pids-limit int    Processes per step (default 1024; -1 for none)
      --step-timeout dur  Kill a step that runs longer (e.g. 90s, 10m)
      --runtime path      OCI runtime (default: crun, else runc)
      --userns mode       private (default: root in a step is an unprivileged host uid) or host`;

/** Every verb, in help order. */
export const COMMANDS: Record<string, Command> = {
  build: { usage: '[OPTIONS] PATH | -', summary: 'Build an image from a Dockerfile', help: `Options:
      --add-host list     Add a custom host-to-IP mapping (host:ip) to RUN steps' /etc/hosts
      --build-arg list    Set build-time variables
      --cache-from list   Images to consider as cache sources (local, or a registry reference read lazily)
  -f, --file string       Name of the Dockerfile (default: PATH/Dockerfile; - reads it from stdin)
      --iidfile string    Write the image ID to the file
      --label list        Set metadata for an image
  -o, --output list       Also export the filesystem: type=local,dest=DIR or type=tar,dest=FILE
      --network string    Network mode for RUN: default (outbound only, no host loopback), none or host
      --no-cache          Do not use cache when building the image (cache mounts start empty)
      --secret list       A secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR
      --ssh list          An SSH agent for RUN --mount=type=ssh: ID[=SOCKET|KEYFILE] (default: $SSH_AUTH_SOCK)
      --allow list        security.insecure: let RUN --security=insecure run (all capabilities, no seccomp)
      --plan              Predict each step (cache hit, or miss and why, with an estimated time); run nothing
      --platform string   Target platform: only the host's own (no emulation)
      --progress string   legacy (the default and only output for now)
      --pull              Pull every base image that names a registry again
  -q, --quiet             Suppress the build output and print image ID on success
      --shm-size bytes    Size of RUN steps' /dev/shm (default 64m)
  -t, --tag list          Name and optionally a tag in the 'name:tag' format
      --target string     Set the target build stage to build
      --ulimit list       Ulimit options for RUN steps (nofile=1024:2048)
      --storage-driver s  overlay (default) or vfs: assemble the rootfs by copying where overlayfs is unavailable
      --workers int       Worker threads for RUN/COPY/ADD: steps at once (default: twice the cores, at least 4)${SANDBOX_HELP}`, run: buildCommand },
  images: { usage: '[OPTIONS] [REPOSITORY[:TAG]]', summary: 'List images', help: `Options:
  -a, --all             Show all images (default hides intermediate images)
      --format string   json (one JSON object per line), a Go template ({{.Repository}}:{{.Tag}}), or table TEMPLATE
  -q, --quiet           Only show image IDs`, run: images },
  tag: { usage: 'SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]', summary: 'Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE', run: tag },
  rmi: { usage: '[OPTIONS] IMAGE [IMAGE...]', summary: 'Remove one or more images', help: 'Options:\n  -f, --force   Remove an image referenced by several tags', run: rmi },
  history: { usage: '[OPTIONS] IMAGE', summary: 'Show the history of an image', help: 'Options:\n      --no-trunc   Don\'t truncate output\n  -q, --quiet      Only show image IDs\n      --format     json, a Go template ({{.ID}} {{.CreatedBy}}), or table TEMPLATE', run: history },
  inspect: { usage: '[OPTIONS] IMAGE [IMAGE...]', summary: 'Return low-level information on images', help: 'Options:\n  -f, --format string   A Go template ({{.Id}}, {{json .Config}}), or json', run: inspect },
  import: { usage: '[OPTIONS] file|- [REPOSITORY[:TAG]]', summary: 'Import the contents from a tarball to create a filesystem image', help: 'Options:\n  -c, --change list   Apply Dockerfile instruction to the created image\n  -m, --message string   Set commit message for imported image', run: importCmd },
  save: { usage: '[OPTIONS] IMAGE [IMAGE...]', summary: 'Save one or more images to a tar archive (docker save format)', help: 'Options:\n      --format string   docker (default) or oci (an OCI image layout, which docker load also reads)\n  -o, --output string   Write to a file, instead of STDOUT', run: save },
  load: { usage: '[OPTIONS]', summary: 'Load an image from a tar archive or STDIN', help: 'Options:\n  -i, --input string   Read from tar archive file, instead of STDIN\n  -q, --quiet', run: load },
  serve: { usage: '[OPTIONS]', summary: 'Serve the Docker Engine API to the docker CLI (DOCKER_HOST=unix://… DOCKER_BUILDKIT=0)', help: 'Options:\n  -H, --host list         unix:///path.sock (default <root>/slipway.sock, mode 0660) or tcp://HOST:PORT (needs a token)\n      --token-file FILE   Token TCP clients send as "Authorization: Bearer <token>" (default: env SLIPWAY_TOKEN)\n      --workers int       Worker threads for RUN/COPY/ADD: steps at once (default: twice the cores, at least 4)\n      --insecure-registry HOST   Allow plain HTTP to HOST for push/pull (repeatable)\n      --redis URL         Enable the farm endpoints (/slipway/v1/builds) with this Redis\n      --registry HOST     The farm\'s registry (with --redis)\n      --tenants-file FILE Tenants\' tokens, "TENANT TOKEN [operator]" per line; reloaded on SIGHUP and when it changes\n      --no-affinity       Queue farm builds for any worker\n      --affinity-wait sec How long the worker holding a build\'s cache has to start it (default 2)\n      --allow list        network.host: let builds ask for the host network; security.insecure: RUN --security=insecure (entitlements, as BuildKit\'s)\nSandbox defaults and ceilings for every build:' + SANDBOX_HELP, run: async (args, env) => (await import('./serve-cmd.js')).serveCommand(args, env) },
  stats: { usage: '[OPTIONS]', summary: 'Cache hit rates per build and tag, time saved, top cache breakers', help: 'Options:\n      --tag string     Only builds of this tag\n      --since string   Only builds since (30m, 24h, 7d, or a date)\n      --format json    One JSON document', run: statsCommand },
  ...REGISTRY_COMMANDS,
  prune: { usage: '[OPTIONS]', summary: 'Remove cache images nothing references, least worth keeping first, and unused cache mounts', help: 'Options:\n      --keep-storage size    Stop once the store (images and cache mounts) is under this size (e.g. 10GB)\n      --keep-duration dur    Keep images created or used within this time (e.g. 24h)\n      --dry-run              Only list what would be removed', run: pruneCommand },
  submit: { usage: '[OPTIONS] CONTEXT', summary: 'Queue a build on the farm (bullmq on Redis)', help: `Options:
  -t, --tag list          Name and optionally a tag
  -f, --file string       Name of the Dockerfile
      --build-arg list    Set build-time variables
      --target string     Set the target build stage
      --push              Push the result to the farm's registry
      --wait              Stream the build's progress and exit with its status
      --no-cache          Do not use the cache
      --secret list       id=ID,src=FILE or id=ID,env=VAR: sealed here for the workers' keys, never sent in the clear
      --server URL        Submit through a serve's farm API (tcp://HOST:PORT or unix:///path.sock) as the tenant of the token
      --token-file FILE   The tenant's token (default $SLIPWAY_TOKEN), sent as "Authorization: Bearer"
  Without --server, straight to Redis as the operator (tenant "default"):
      --redis URL         Redis (default $REDIS_URL, else redis://127.0.0.1:6379)
      --registry HOST     The farm's registry (default $SLIPWAY_REGISTRY; credentials from "slipway login")
      --no-affinity       Queue for any worker, not first for the one holding the build's cache
      --affinity-wait sec How long that worker has to start it before any may (default 2)`, run: submitCommand },
  worker: { usage: '[OPTIONS]', summary: 'Run a farm worker: take builds from the queue, share the cache through Redis and the registry', help: `Options:
      --redis URL              Redis (default $REDIS_URL, else redis://127.0.0.1:6379)
      --registry HOST          The farm's registry (default $SLIPWAY_REGISTRY)
      --concurrency int        Builds at once (default 1)
      --threads int            Worker threads for steps (default: cores)
      --metrics-port int       Serve Prometheus metrics on PORT
      --metrics-host addr      Address the metrics listener binds (default 127.0.0.1)
      --shared-tenant name     A tenant whose cache and images every tenant may read (public base images)
      --lock-duration sec      Job lock; a dead worker's job is retaken after it (default 30)
      --shutdown-timeout sec   On SIGTERM, wait this long for running builds (default 60)
      --name string            Worker name
      --allow list             network.host (the host network), security.insecure (RUN --security=insecure)
      --cache-mount-cap size   Bytes a tenant's shared cache mounts may hold in the registry (default 1GB, 0: no cap)
      --no-cache-mount-sharing Keep cache mounts on this worker only (neither restore nor publish them)
Sandbox defaults and ceilings for every build:${SANDBOX_HELP}`, run: workerCommand },
  farm: { usage: 'status [BUILD...] [--redis URL] [--format json] | rm-cache-mount TENANT ID [--redis URL]', summary: 'Show the farm: queue depth, workers, running builds, shared cache mounts (or the state of some builds); rm-cache-mount forgets a shared cache mount', run: farmCommand },
  run: { usage: '[OPTIONS] IMAGE [COMMAND] [ARG...]', summary: 'Run a command in a new container (its changes are discarded)', help: `Options:
  -e, --env list        Set environment variables
  -i, --interactive     Keep STDIN open
      --network string  default (outbound only), none, or host
      --rm              Remove the container when it exits (always the case)
  -t, --tty             Allocate a pseudo-TTY (the terminal is passed through)
  -u, --user string     Username or UID (format: <name|uid>[:<group|gid>])
  -w, --workdir string  Working directory inside the container${SANDBOX_HELP}`, run: runCommand },
};

