import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SlipwayError } from '../errors.js';
import type { StoreLayout } from '../store/layout.js';
import { shortId, type ImageId } from '../store/layout.js';
import { ensureStore, readImage, resolveImage } from '../store/graph.js';
import { updateRepositories } from '../store/repositories.js';
import { parseReference, formatReference } from '../store/reference.js';
import { listImages, imageHistory, inspectImage } from '../store/inspect.js';
import { removeImage } from '../store/remove.js';
import { importImage, loadImages, saveImages } from '../registry/archive.js';
import { humanAgo, humanSize, table } from './format.js';
import { buildCommand, runCommand } from './build-cmd.js';
import { configFromChanges } from './changes.js';
import { REGISTRY_COMMANDS, saveWriter } from './registry-cmds.js';
import { statsCommand } from './stats-cmd.js';
import { pruneCommand } from './prune-cmd.js';
import { farmCommand, submitCommand, workerCommand } from './farm-cmds.js';

/** What a command gets besides its arguments. */
export interface CommandEnv { layout: StoreLayout }

/** One CLI verb. */
export interface Command {
  usage: string;
  summary: string;
  help?: string;
  run: (args: string[], env: CommandEnv) => Promise<number>;
}

function out(s: string): void {
  process.stdout.write(s);
}

async function images(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { all: { type: 'boolean', short: 'a' }, quiet: { type: 'boolean', short: 'q' }, format: { type: 'string' } }, allowPositionals: true });
  let rows = await listImages(layout, values.all ?? false);
  if (positionals[0]) {
    const want = positionals[0];
    rows = rows.filter((r) => r.repository === want || `${r.repository}:${r.tag}` === want);
  }
  if (values.quiet) {
    out([...new Set(rows.map((r) => shortId(r.id)))].map((s) => `${s}\n`).join(''));
  } else if (values.format === 'json') {
    for (const r of rows) out(`${JSON.stringify({ Repository: r.repository, Tag: r.tag, ID: shortId(r.id), CreatedAt: r.created, Size: r.size, VirtualSize: r.virtualSize })}\n`);
  } else if (values.format !== undefined) {
    throw new SlipwayError('ERR_USAGE', `unsupported --format ${values.format} (use json)`);
  } else {
    out(table([['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'], ...rows.map((r) => [r.repository, r.tag, shortId(r.id), humanAgo(r.created), `${humanSize(r.size)} (virtual ${humanSize(r.virtualSize)})`])]));
  }
  return 0;
}

async function tag(args: string[], { layout }: CommandEnv): Promise<number> {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true });
  if (positionals.length !== 2) throw new SlipwayError('ERR_USAGE', '"slipway tag" requires exactly 2 arguments: SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]');
  const id = await resolveImage(layout, positionals[0]!);
  const ref = parseReference(positionals[1]!);
  await updateRepositories(layout, (r) => { (r.Repositories[ref.repository] ??= {})[ref.tag] = id; });
  return 0;
}

async function rmi(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { force: { type: 'boolean', short: 'f' } }, allowPositionals: true });
  if (positionals.length === 0) throw new SlipwayError('ERR_USAGE', '"slipway rmi" requires at least 1 argument');
  let status = 0;
  for (const ref of positionals) {
    try {
      for (const e of await removeImage(layout, ref, values.force ?? false)) {
        out('Untagged' in e ? `Untagged: ${e.Untagged}\n` : `Deleted: ${e.Deleted}\n`);
      }
    } catch (e) {
      if (!(e instanceof SlipwayError)) throw e;
      process.stderr.write(`Error response from daemon: ${e.message}\n`);
      status = 1;
    }
  }
  return status;
}

async function history(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { 'no-trunc': { type: 'boolean' }, quiet: { type: 'boolean', short: 'q' }, format: { type: 'string' } }, allowPositionals: true });
  if (positionals.length !== 1) throw new SlipwayError('ERR_USAGE', '"slipway history" requires exactly 1 argument');
  const rows = await imageHistory(layout, await resolveImage(layout, positionals[0]!));
  if (values.format === 'json') {
    for (const r of rows) out(`${JSON.stringify(r)}\n`);
    return 0;
  }
  if (values.quiet) {
    out(rows.map((r) => `${values['no-trunc'] ? r.id : shortId(r.id)}\n`).join(''));
    return 0;
  }
  const trunc = (s: string) => (values['no-trunc'] || s.length <= 45 ? s : `${s.slice(0, 44)}…`);
  out(table([['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT'], ...rows.map((r) => [values['no-trunc'] ? r.id : shortId(r.id), humanAgo(r.created), trunc(r.createdBy), humanSize(r.size), r.comment])]));
  return 0;
}

async function inspect(args: string[], { layout }: CommandEnv): Promise<number> {
  const { positionals } = parseArgs({ args, options: { format: { type: 'string', short: 'f' } }, allowPositionals: true });
  if (positionals.length === 0) throw new SlipwayError('ERR_USAGE', '"slipway inspect" requires at least 1 argument');
  const docs: unknown[] = [];
  let status = 0;
  for (const ref of positionals) {
    try {
      docs.push(await inspectImage(layout, await resolveImage(layout, ref)));
    } catch (e) {
      if (!(e instanceof SlipwayError)) throw e;
      process.stderr.write(`Error: No such image: ${ref}\n`);
      status = 1;
    }
  }
  out(`${JSON.stringify(docs, null, 4)}\n`);
  return status;
}

async function importCmd(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { change: { type: 'string', short: 'c', multiple: true }, message: { type: 'string', short: 'm' } }, allowPositionals: true });
  if (positionals.length < 1 || positionals.length > 2) throw new SlipwayError('ERR_USAGE', '"slipway import" requires 1 or 2 arguments: file|- [REPOSITORY[:TAG]]');
  const file = positionals[0]!;
  const config = configFromChanges(values.change ?? []);
  const input = file === '-' ? process.stdin : fs.createReadStream(file);
  if (file !== '-' && !fs.existsSync(file)) throw new SlipwayError('ERR_USAGE', `open ${file}: no such file or directory`);
  const id = await importImage(layout, input, { config, ...(positionals[1] ? { tag: positionals[1] } : {}), comment: values.message ?? 'Imported from -' });
  out(`sha256:${id}\n`);
  return 0;
}

async function save(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { output: { type: 'string', short: 'o' }, format: { type: 'string' } }, allowPositionals: true });
  if (positionals.length === 0) throw new SlipwayError('ERR_USAGE', '"slipway save" requires at least 1 argument');
  const saveImages = saveWriter(values.format);
  if (!values.output && process.stdout.isTTY) throw new SlipwayError('ERR_USAGE', 'cowardly refusing to save to a terminal. Use the -o flag or redirect');
  for (const r of positionals) await resolveImage(layout, r);
  if (values.output) {
    const tmp = `${values.output}.tmp-${process.pid}`;
    try {
      await saveImages(layout, positionals, fs.createWriteStream(tmp));
      fs.renameSync(tmp, values.output);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  } else {
    await saveImages(layout, positionals, process.stdout);
  }
  return 0;
}

async function load(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values } = parseArgs({ args, options: { input: { type: 'string', short: 'i' }, quiet: { type: 'boolean', short: 'q' } } });
  const input = values.input ? fs.createReadStream(values.input) : process.stdin;
  if (values.input && !fs.existsSync(values.input)) throw new SlipwayError('ERR_USAGE', `open ${values.input}: no such file or directory`);
  for (const r of await loadImages(layout, input)) {
    if (r.tags.length === 0) out(`Loaded image ID: sha256:${r.id}\n`);
    for (const t of r.tags) out(`Loaded image: ${t}\n`);
  }
  return 0;
}

/** Every verb, in help order. */
export const COMMANDS: Record<string, Command> = {
  build: { usage: '[OPTIONS] PATH', summary: 'Build an image from a Dockerfile', help: `Options:
      --build-arg list    Set build-time variables
  -f, --file string       Name of the Dockerfile (default: PATH/Dockerfile)
      --network string    Network mode for RUN: host (default) or none
      --no-cache          Do not use cache when building the image
      --plan              Predict each step (cache hit, or miss and why, with an estimated time); run nothing
  -q, --quiet             Suppress the build output and print image ID on success
  -t, --tag list          Name and optionally a tag in the 'name:tag' format
      --target string     Set the target build stage to build
      --storage-driver s  overlay (default) or vfs: assemble the rootfs by copying where overlayfs is unavailable
      --workers int       Worker threads for RUN/COPY/ADD (default: number of cores)`, run: buildCommand },
  images: { usage: '[OPTIONS] [REPOSITORY[:TAG]]', summary: 'List images', help: `Options:
  -a, --all             Show all images (default hides intermediate images)
      --format string   json: one JSON object per line
  -q, --quiet           Only show image IDs`, run: images },
  tag: { usage: 'SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]', summary: 'Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE', run: tag },
  rmi: { usage: '[OPTIONS] IMAGE [IMAGE...]', summary: 'Remove one or more images', help: 'Options:\n  -f, --force   Remove an image referenced by several tags', run: rmi },
  history: { usage: '[OPTIONS] IMAGE', summary: 'Show the history of an image', help: 'Options:\n      --no-trunc   Don\'t truncate output\n  -q, --quiet      Only show image IDs\n      --format json', run: history },
  inspect: { usage: 'IMAGE [IMAGE...]', summary: 'Return low-level information on images', run: inspect },
  import: { usage: '[OPTIONS] file|- [REPOSITORY[:TAG]]', summary: 'Import the contents from a tarball to create a filesystem image', help: 'Options:\n  -c, --change list   Apply Dockerfile instruction to the created image\n  -m, --message string   Set commit message for imported image', run: importCmd },
  save: { usage: '[OPTIONS] IMAGE [IMAGE...]', summary: 'Save one or more images to a tar archive (docker save format)', help: 'Options:\n      --format string   docker (default) or oci (an OCI image layout, which docker load also reads)\n  -o, --output string   Write to a file, instead of STDOUT', run: save },
  load: { usage: '[OPTIONS]', summary: 'Load an image from a tar archive or STDIN', help: 'Options:\n  -i, --input string   Read from tar archive file, instead of STDIN\n  -q, --quiet', run: load },
  serve: { usage: '[OPTIONS]', summary: 'Serve the Docker Engine API to the docker CLI (DOCKER_HOST=unix://… DOCKER_BUILDKIT=0)', help: 'Options:\n  -H, --host list         unix:///path.sock (default <root>/slipway.sock, mode 0660) or tcp://HOST:PORT (needs a token)\n      --token-file FILE   Token TCP clients send as "Authorization: Bearer <token>" (default: env SLIPWAY_TOKEN)\n      --workers int       Worker threads for RUN/COPY/ADD (default: number of cores)', run: async (args, env) => (await import('./serve-cmd.js')).serveCommand(args, env) },
  stats: { usage: '[OPTIONS]', summary: 'Cache hit rates per build and tag, time saved, top cache breakers', help: 'Options:\n      --tag string     Only builds of this tag\n      --since string   Only builds since (30m, 24h, 7d, or a date)\n      --format json    One JSON document', run: statsCommand },
  ...REGISTRY_COMMANDS,
  prune: { usage: '[OPTIONS]', summary: 'Remove cache images nothing references, least worth keeping first', help: 'Options:\n      --keep-storage size    Stop once the store is under this size (e.g. 10GB)\n      --keep-duration dur    Keep images created or used within this time (e.g. 24h)\n      --dry-run              Only list what would be removed', run: pruneCommand },
  submit: { usage: '[OPTIONS] CONTEXT', summary: 'Queue a build on the farm (bullmq on Redis)', help: `Options:
  -t, --tag list          Name and optionally a tag
  -f, --file string       Name of the Dockerfile
      --build-arg list    Set build-time variables
      --target string     Set the target build stage
      --push              Push the result to the farm's registry
      --wait              Stream the build's progress and exit with its status
      --no-cache          Do not use the cache
      --tenant string     Cache namespace (default "default")
      --redis URL         Redis (default $REDIS_URL, else redis://127.0.0.1:6379)
      --registry HOST     The farm's registry (default $SLIPWAY_REGISTRY)`, run: submitCommand },
  worker: { usage: '[OPTIONS]', summary: 'Run a farm worker: take builds from the queue, share the cache through Redis and the registry', help: `Options:
      --redis URL              Redis (default $REDIS_URL, else redis://127.0.0.1:6379)
      --registry HOST          The farm's registry (default $SLIPWAY_REGISTRY)
      --concurrency int        Builds at once (default 1)
      --threads int            Worker threads for steps (default: cores)
      --metrics-port int       Serve Prometheus metrics on 127.0.0.1:PORT
      --lock-duration sec      Job lock; a dead worker's job is retaken after it (default 30)
      --shutdown-timeout sec   On SIGTERM, wait this long for running builds (default 60)
      --name string            Worker name`, run: workerCommand },
  farm: { usage: 'status [--redis URL] [--format json]', summary: 'Show the farm: queue depth, workers, running builds', run: farmCommand },
  run: { usage: '[OPTIONS] IMAGE [COMMAND] [ARG...]', summary: 'Run a command in a new container (its changes are discarded)', help: `Options:
  -e, --env list        Set environment variables
  -i, --interactive     Keep STDIN open
      --network string  host (default) or none
      --rm              Remove the container when it exits (always the case)
  -t, --tty             Allocate a pseudo-TTY (the terminal is passed through)
  -u, --user string     Username or UID (format: <name|uid>[:<group|gid>])
  -w, --workdir string  Working directory inside the container`, run: runCommand },
};

export { path, readImage, ensureStore, formatReference };
export type { ImageId };
