import { parseArgs } from 'node:util';
import { SlipwayError } from '../errors.js';
import type { StoreLayout } from '../store/layout.js';
import { resolveImage } from '../store/graph.js';
import { saveImages } from '../registry/archive.js';
import { exportOciLayout, saveOciArchive } from '../registry/oci-layout.js';
import { pushImage } from '../registry/push.js';
import { pullBaseImage, pullImage } from '../registry/pull.js';
import { searchRegistry } from '../registry/search.js';
import { authFile, configDir, readCredentials, removeCredentials, saveCredentials, verifyLogin } from '../registry/auth.js';
import type { Credentials } from '../registry/client.js';
import { normalizeRegistry, parseRemoteReference, splitRegistry } from '../registry/remote-reference.js';
import type { RegistryProgress } from '../registry/progress.js';
import type { Platform } from '../registry/manifest.js';
import { table } from './format.js';

/** What a registry verb gets besides its arguments (as commands.ts's CommandEnv). */
interface Env { layout: StoreLayout }

function out(s: string): void {
  process.stdout.write(s);
}

const INSECURE = { 'insecure-registry': { type: 'string', multiple: true } } as const;

/** `--insecure-registry HOST` flags plus `SLIPWAY_INSECURE_REGISTRIES` (comma-separated). */
function insecureList(flags: string[] | undefined): string[] {
  return [...(flags ?? []), ...(process.env['SLIPWAY_INSECURE_REGISTRIES'] ?? '').split(',').map((s) => s.trim()).filter(Boolean)];
}

/**
 * Prints progress as Docker's CLI does without a terminal: `id: status` per change (a run of
 * `Pushing`/`Downloading` updates prints once), image-wide lines as they are.
 */
function printer(quiet: boolean): (e: RegistryProgress) => void {
  const last = new Map<string, string>();
  return (e) => {
    if (quiet || e.aux || e.status === '') return;
    if (e.id === undefined) {
      out(`${e.status}\n`);
      return;
    }
    if (last.get(e.id) === e.status) return;
    last.set(e.id, e.status);
    out(`${e.id}: ${e.status}\n`);
  };
}

/**
 * `build`'s FROM of an image the store lacks: pulled from the registry its name names, with
 * the login `slipway login` saved and SLIPWAY_INSECURE_REGISTRIES, progress printed as a
 * legacy `docker build` prints it under the FROM step.
 */
/** How `build --cache-from` reaches registries: the insecure list and `slipway login`'s credentials. */
export function registryAccess(): { insecureRegistries: string[]; credentials: (registry: string) => Promise<Credentials | undefined> } {
  return { insecureRegistries: insecureList(undefined), credentials: (registry) => readCredentials(configDir(), registry) };
}

export async function pullForBuild(layout: StoreLayout, ref: string, quiet: boolean): Promise<boolean> {
  const remote = parseRemoteReference(ref);
  return pullBaseImage({
    layout, ref, onProgress: printer(quiet), insecureRegistries: insecureList(undefined),
    credentials: remote.root ? undefined : await readCredentials(configDir(), remote.registry),
  });
}

export async function push(args: string[], { layout }: Env): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { 'all-tags': { type: 'boolean', short: 'a' }, format: { type: 'string' }, quiet: { type: 'boolean', short: 'q' }, 'chunk-size': { type: 'string' }, ...INSECURE }, allowPositionals: true });
  if (positionals.length !== 1) throw new SlipwayError('ERR_USAGE', '"slipway push" requires exactly 1 argument: NAME[:TAG]');
  const format = values.format ?? 'docker';
  if (format !== 'docker' && format !== 'oci') throw new SlipwayError('ERR_USAGE', `unsupported --format ${format} (use docker or oci)`);
  const chunkSize = values['chunk-size'] === undefined ? undefined : Number(values['chunk-size']);
  if (chunkSize !== undefined && !(Number.isSafeInteger(chunkSize) && chunkSize > 0)) throw new SlipwayError('ERR_USAGE', `invalid --chunk-size ${values['chunk-size']}`);
  const ref = positionals[0]!;
  const remote = parseRemoteReference(ref);
  const results = await pushImage({
    layout, ref, allTags: values['all-tags'] ?? false, format, onProgress: printer(values.quiet ?? false),
    credentials: remote.root ? undefined : await readCredentials(configDir(), remote.registry), insecureRegistries: insecureList(values['insecure-registry']),
    ...(chunkSize ? { chunkSize } : {}),
  });
  if (values.quiet) for (const r of results) out(`${remote.localName}:${r.tag}\n`);
  return 0;
}

function parsePlatform(s: string | undefined): Platform | undefined {
  if (s === undefined) return undefined;
  const [os, architecture, variant] = s.split('/');
  if (!os || !architecture) throw new SlipwayError('ERR_USAGE', `invalid --platform ${s} (use os/arch[/variant])`);
  return { os, architecture, ...(variant ? { variant } : {}) };
}

export async function pull(args: string[], { layout }: Env): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { quiet: { type: 'boolean', short: 'q' }, platform: { type: 'string' }, ...INSECURE }, allowPositionals: true });
  if (positionals.length !== 1) throw new SlipwayError('ERR_USAGE', '"slipway pull" requires exactly 1 argument: NAME[:TAG|@DIGEST]');
  const remote = parseRemoteReference(positionals[0]!);
  const platform = parsePlatform(values.platform);
  const r = await pullImage({
    layout, ref: positionals[0]!, onProgress: printer(values.quiet ?? false), credentials: await readCredentials(configDir(), remote.registry),
    insecureRegistries: insecureList(values['insecure-registry']), ...(platform ? { platform } : {}),
  });
  out(`${r.reference}\n`);
  return 0;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** Reads one line from the terminal; with `hidden`, without echo. */
function promptLine(question: string, hidden: boolean): Promise<string> {
  if (!process.stdin.isTTY) throw new SlipwayError('ERR_USAGE', 'Cannot perform an interactive login from a non TTY device');
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stdout.write(question);
    if (hidden) stdin.setRawMode(true);
    let buf = '';
    const finish = (err?: Error) => {
      stdin.off('data', onData);
      if (hidden) {
        stdin.setRawMode(false);
        process.stdout.write('\n');
      }
      stdin.pause();
      if (err) reject(err);
      else resolve(buf);
    };
    const onData = (d: Buffer) => {
      for (const ch of d.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003') return finish(new SlipwayError('ERR_CANCELLED', 'login cancelled'));
        buf = ch === '\u007f' ? buf.slice(0, -1) : buf + ch;
      }
    };
    stdin.on('data', onData);
    stdin.resume();
  });
}

export async function login(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { username: { type: 'string', short: 'u' }, password: { type: 'string', short: 'p' }, 'password-stdin': { type: 'boolean' }, ...INSECURE }, allowPositionals: true });
  if (positionals.length > 1) throw new SlipwayError('ERR_USAGE', '"slipway login" requires at most 1 argument: [SERVER]');
  const registry = normalizeRegistry(positionals[0]);
  if (values.password !== undefined && values['password-stdin']) throw new SlipwayError('ERR_USAGE', '--password and --password-stdin are mutually exclusive');
  if (values['password-stdin'] && !values.username) throw new SlipwayError('ERR_USAGE', 'Must provide --username with --password-stdin');
  if (values.password !== undefined) process.stderr.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
  const username = values.username ?? (await promptLine('Username: ', false)).trim();
  let password = values.password;
  if (values['password-stdin']) password = (await readStdin()).replace(/\r?\n$/, '');
  password ??= await promptLine('Password: ', true);
  if (!username || !password) throw new SlipwayError('ERR_USAGE', 'Error: username and password are required');
  const credentials = { username, password };
  await verifyLogin({ registry, credentials, insecureRegistries: insecureList(values['insecure-registry']) });
  const dir = configDir();
  await saveCredentials(dir, registry, credentials);
  process.stderr.write(`WARNING! Your password will be stored unencrypted in ${authFile(dir)}.\n`);
  out('Login Succeeded\n');
  return 0;
}

export async function logout(args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true });
  if (positionals.length > 1) throw new SlipwayError('ERR_USAGE', '"slipway logout" requires at most 1 argument: [SERVER]');
  const registry = normalizeRegistry(positionals[0]);
  if (await removeCredentials(configDir(), registry)) out(`Removing login credentials for ${registry}\n`);
  else out(`Not logged in to ${registry}\n`);
  return 0;
}

export async function search(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { limit: { type: 'string' }, 'no-trunc': { type: 'boolean' }, ...INSECURE }, allowPositionals: true });
  if (positionals.length !== 1) throw new SlipwayError('ERR_USAGE', '"slipway search" requires exactly 1 argument: TERM');
  const term = positionals[0]!;
  const limit = values.limit === undefined ? 25 : Number(values.limit);
  const rows = await searchRegistry({
    term, limit, credentials: await readCredentials(configDir(), splitRegistry(term).registry), insecureRegistries: insecureList(values['insecure-registry']),
  });
  const trunc = (s: string) => (values['no-trunc'] || s.length <= 45 ? s : `${s.slice(0, 44)}…`);
  // The seed's columns: NAME DESCRIPTION STARS OFFICIAL TRUSTED.
  out(table([['NAME', 'DESCRIPTION', 'STARS', 'OFFICIAL', 'TRUSTED'], ...rows.map((r) => [r.name, trunc(r.description), String(r.stars), r.official ? '[OK]' : '', r.automated ? '[OK]' : ''])]));
  return 0;
}

export async function exportOci(args: string[], { layout }: Env): Promise<number> {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true });
  if (positionals.length < 2) throw new SlipwayError('ERR_USAGE', '"slipway export-oci" requires at least 2 arguments: IMAGE [IMAGE...] DIR');
  const dir = positionals[positionals.length - 1]!;
  const refs = positionals.slice(0, -1);
  for (const r of refs) await resolveImage(layout, r);
  await exportOciLayout(layout, refs, dir);
  return 0;
}

/** The `save` writer for `--format` (`docker`, the default, or `oci`). */
export function saveWriter(format: string | undefined): (layout: StoreLayout, refs: string[], out: NodeJS.WritableStream) => Promise<void> {
  if (format === undefined || format === 'docker') return saveImages;
  if (format === 'oci') return saveOciArchive;
  throw new SlipwayError('ERR_USAGE', `unsupported --format ${format} (use docker or oci)`);
}


/** The registry verbs, merged into the CLI's COMMANDS. */
