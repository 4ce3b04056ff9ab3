import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SlipwayError } from '../errors.js';
import { withLock, writeFileAtomic } from '../fs.js';
import { RegistryClient, type Credentials } from './client.js';
import { DEFAULT_INDEX, DEFAULT_INDEX_AUTH_KEY } from './remote-reference.js';

/**
 * `auth.json`, in the shape of Docker's `config.json`: registry -> base64("user:password").
 * Like Docker's file store, this is encoding, not encryption: the file is 0600 in a 0700 folder.
 */
export interface AuthFileJson {
  auths: Record<string, { auth?: string; identitytoken?: string }>;
}

/**
 * The user's Slipway config folder: `$SLIPWAY_CONFIG`, else `$XDG_CONFIG_HOME/slipway`, else
 * `~/.config/slipway`.
 */
export function configDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env['SLIPWAY_CONFIG']) return env['SLIPWAY_CONFIG'];
  const base = env['XDG_CONFIG_HOME'] || path.join(os.homedir(), '.config');
  return path.join(base, 'slipway');
}

/** The credentials file inside a config folder. */
export function authFile(dir: string): string {
  return path.join(dir, 'auth.json');
}

/** The key a registry's credentials are filed under (Docker's, for the default index). */
function authKey(registry: string): string {
  return registry === DEFAULT_INDEX ? DEFAULT_INDEX_AUTH_KEY : registry;
}

async function readAuthFile(dir: string): Promise<AuthFileJson> {
  try {
    const parsed = JSON.parse(await fs.readFile(authFile(dir), 'utf8')) as Partial<AuthFileJson>;
    return { auths: parsed.auths && typeof parsed.auths === 'object' ? parsed.auths : {} };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { auths: {} };
    throw new SlipwayError('ERR_INVALID_OPTION', `cannot read ${authFile(dir)}: ${(e as Error).message}`);
  }
}

async function updateAuthFile(dir: string, fn: (a: AuthFileJson) => void): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await withLock(path.join(dir, 'auth.json.lock'), async () => {
    const a = await readAuthFile(dir);
    fn(a);
    await writeFileAtomic(authFile(dir), `${JSON.stringify(a, null, '\t')}\n`, 0o600);
  });
}

/** The stored credentials for `registry`, if any. */
export async function readCredentials(dir: string, registry: string): Promise<Credentials | undefined> {
  const entry = (await readAuthFile(dir)).auths[authKey(registry)];
  if (!entry) return undefined;
  if (entry.identitytoken) return { identityToken: entry.identitytoken };
  if (!entry.auth) return undefined;
  const text = Buffer.from(entry.auth, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) return undefined;
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

/** Files credentials for `registry` (the file is rewritten atomically, mode 0600). */
export async function saveCredentials(dir: string, registry: string, creds: Credentials): Promise<void> {
  await updateAuthFile(dir, (a) => {
    a.auths[authKey(registry)] = 'identityToken' in creds
      ? { identitytoken: creds.identityToken }
      : { auth: Buffer.from(`${creds.username}:${creds.password}`).toString('base64') };
  });
}

/** Forgets `registry`'s credentials; false when there were none. */
export async function removeCredentials(dir: string, registry: string): Promise<boolean> {
  let had = false;
  if ((await readAuthFile(dir)).auths[authKey(registry)] === undefined) return false;
  await updateAuthFile(dir, (a) => {
    had = a.auths[authKey(registry)] !== undefined;
    delete a.auths[authKey(registry)];
  });
  return had;
}

/**
 * Checks credentials against a registry before they are stored: `GET /v2/` answered with Basic
 * auth or, for a bearer challenge, a token obtained with them. Throws ERR_UNAUTHORIZED when the
 * registry refuses them.
 */
export async function verifyLogin(opts: { registry: string; credentials: Credentials; insecureRegistries?: readonly string[] }): Promise<void> {
  const client = new RegistryClient({ registry: opts.registry, credentials: opts.credentials, ...(opts.insecureRegistries ? { insecureRegistries: opts.insecureRegistries } : {}) });
  try {
    await client.ping();
  } catch (e) {
    if (e instanceof SlipwayError && e.code === 'ERR_UNAUTHORIZED') {
      throw new SlipwayError('ERR_UNAUTHORIZED', `login to ${opts.registry} failed: ${e.message.replace(/^.*?: (?=unauthorized|denied)/, '')}`);
    }
    throw e;
  }
}

/**
 * Decodes the Engine API's `X-Registry-Auth` header (base64url JSON of Docker's AuthConfig:
 * `{username, password, serveraddress}` or `{identitytoken}`); `e30=` (`{}`), an absent or
 * unreadable header mean anonymous. For the push and pull endpoints.
 */
export function credentialsFromRegistryAuth(header: string | undefined): Credentials | undefined {
  if (!header) return undefined;
  let cfg: { username?: unknown; password?: unknown; auth?: unknown; identitytoken?: unknown };
  try {
    cfg = JSON.parse(Buffer.from(header.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8')) as typeof cfg;
  } catch {
    return undefined;
  }
  if (!cfg || typeof cfg !== 'object') return undefined;
  if (typeof cfg.identitytoken === 'string' && cfg.identitytoken) return { identityToken: cfg.identitytoken };
  if (typeof cfg.username === 'string' && cfg.username && typeof cfg.password === 'string') return { username: cfg.username, password: cfg.password };
  if (typeof cfg.auth === 'string' && cfg.auth) {
    const text = Buffer.from(cfg.auth, 'base64').toString('utf8');
    const colon = text.indexOf(':');
    if (colon > 0) return { username: text.slice(0, colon), password: text.slice(colon + 1) };
  }
  return undefined;
}
