import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SlipwayError } from '../errors.js';
import { ensureStore, sweepTmp } from '../store/graph.js';
import { WorkerPool } from '../scheduler/pool.js';
import { loadParser } from '../cache/parsed-dockerfile.js';
import { initHash } from '../cache/key.js';
import { EngineServer, parseEndpoint, type Endpoint } from '../api/server.js';
import { ApiError } from '../api/http-errors.js';
import { API_VERSION } from '../api/system-routes.js';
import type { FarmConfig } from '../api/routes.js';
import { normalizeRegistry } from '../registry/remote-reference.js';
import type { CommandEnv } from './command-env.js';
import { SANDBOX_FLAGS, parseAllow, sandboxFromFlags } from '../sandbox/limits.js';
import { TenantTokens } from '../api/tenant-tokens.js';
import { configDir, readCredentials } from '../registry/auth.js';
import { warmBuild } from './warm-build.js';

const MIN_TOKEN_LENGTH = 16;

async function readToken(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return process.env['SLIPWAY_TOKEN'] || undefined;
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (e) {
    throw new SlipwayError('ERR_USAGE', `cannot read --token-file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const st = await fs.stat(file);
  if ((st.mode & 0o077) !== 0) process.stderr.write(`warning: ${file} is readable by other users (chmod 600 it)\n`);
  return text.trim() || undefined;
}

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || /^127\./.test(host);

/**
 * The farm behind `/slipway/v1/builds`: `--redis URL` > `$REDIS_URL` and `--registry HOST` >
 * `$SLIPWAY_REGISTRY`, both needed. A flag without its partner is a usage error; environment
 * variables alone only enable the farm when both are set.
 */
function farmConfig(flags: { redis: string | undefined; registry: string | undefined }): FarmConfig | undefined {
  const redisUrl = flags.redis ?? (process.env['REDIS_URL'] || undefined);
  const registry = flags.registry ?? (process.env['SLIPWAY_REGISTRY'] || undefined);
  if (redisUrl && registry) {
    if (!/^(rediss?|redis-sentinel):\/\//.test(redisUrl)) throw new SlipwayError('ERR_USAGE', `invalid Redis URL ${JSON.stringify(redisUrl)}: use redis://HOST:PORT or redis-sentinel://HOST:PORT,.../MASTER`);
    return { redisUrl, registry: normalizeRegistry(registry) };
  }
  if (flags.redis !== undefined) throw new SlipwayError('ERR_USAGE', '--redis needs a registry for the farm: --registry HOST[:PORT] or SLIPWAY_REGISTRY');
  if (flags.registry !== undefined) throw new SlipwayError('ERR_USAGE', '--registry needs the farm\'s Redis: --redis URL or REDIS_URL');
  return undefined;
}

/** `--insecure-registry HOST` flags plus `SLIPWAY_INSECURE_REGISTRIES` (comma-separated), as push and pull take them. */
function insecureRegistries(flags: string[] | undefined): string[] {
  const env = (process.env['SLIPWAY_INSECURE_REGISTRIES'] ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  return [...(flags ?? []), ...env].map((r) => normalizeRegistry(r));
}

/**
 * Listening means ready, as dockerd's "API listen on": the resident threads are up and readied
 * first (a few hundred ms), or 15 s have gone by (a thread that cannot ready itself fails its
 * first step instead). Meanwhile this thread loads the parser and the step-key hash that a first
 * build needs.
 */
async function readyPool(layout: CommandEnv['layout'], workers: number | undefined): Promise<WorkerPool> {
  const pool = new WorkerPool({ resident: true, warmDomain: layout.tmp, ...(workers !== undefined ? { workers } : {}) });
  const threadsReady = Promise.race([pool.ready, new Promise((resolve) => setTimeout(resolve, 15_000).unref())]);
  await Promise.all([threadsReady, loadParser(), initHash()]);
  return pool;
}

/**
 * `slipway serve`: the Docker Engine API on unix sockets and token-protected TCP ports, one
 * worker pool for every request. Runs until SIGINT or SIGTERM, then cancels running builds
 * and removes its sockets. Over TCP the docker CLI sends the token from its config.json:
 * `{"HttpHeaders": {"Authorization": "Bearer <token>"}}`. `docker push`/`pull` use plain HTTP
 * for loopback registries and those named by `--insecure-registry`; `--redis` and `--registry`
 * enable the farm endpoints; `GET /metrics` is always served.
 */
export async function serveCommand(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      host: { type: 'string', short: 'H', multiple: true }, 'token-file': { type: 'string' }, workers: { type: 'string' },
      'insecure-registry': { type: 'string', multiple: true }, redis: { type: 'string' }, registry: { type: 'string' },
      allow: { type: 'string', multiple: true }, 'tenants-file': { type: 'string' }, 'no-affinity': { type: 'boolean' }, 'affinity-wait': { type: 'string' },
      ...SANDBOX_FLAGS,
    },
    allowPositionals: true,
  });
  if (positionals.length > 0) throw new SlipwayError('ERR_USAGE', '"slipway serve" accepts no arguments');
  const tenants = await openTenants(values['tenants-file']);
  let endpoints: Endpoint[];
  try {
    endpoints = (values.host ?? [`unix://${path.join(path.resolve(layout.root), 'slipway.sock')}`]).map(parseEndpoint);
  } catch (e) {
    throw new SlipwayError('ERR_USAGE', (e as Error).message);
  }
  const token = await readToken(values['token-file']);
  const tcp = endpoints.filter((e): e is Extract<Endpoint, { kind: 'tcp' }> => e.kind === 'tcp');
  if (tcp.length > 0 && token === undefined && tenants === undefined) throw new SlipwayError('ERR_USAGE', 'a TCP listener needs a token: --token-file FILE, SLIPWAY_TOKEN or --tenants-file FILE');
  if (token !== undefined && token.length < MIN_TOKEN_LENGTH) throw new SlipwayError('ERR_USAGE', `the token must have at least ${MIN_TOKEN_LENGTH} characters`);
  for (const e of tcp) if (!isLoopback(e.host)) process.stderr.write(`warning: tcp://${e.host}:${e.port} is plain HTTP: the token travels unencrypted\n`);
  const workers = values.workers !== undefined ? Number(values.workers) : undefined;
  if (workers !== undefined && (!Number.isInteger(workers) || workers < 1)) throw new SlipwayError('ERR_USAGE', '--workers must be a positive integer');
  const farm = await farmWithOptions(farmConfig({ redis: values.redis, registry: values.registry }), values);
  const insecure = insecureRegistries(values['insecure-registry']);
  const policy = { sandbox: sandboxFromFlags(values), entitlements: parseAllow(values.allow) };

  await ensureStore(layout);
  await sweepTmp(layout);
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  // One request's forgotten promise is a bug to log, not a reason to drop every other client.
  process.on('unhandledRejection', (e) => log(`unhandled rejection: ${(e as Error)?.stack ?? String(e)}`));
  const pool = await readyPool(layout, workers);
  await warmBuild(layout, pool);
  let server: EngineServer;
  try {
    server = await EngineServer.start({
      layout, pool, endpoints, ...(token !== undefined ? { token } : {}), ...(tenants ? { tenants } : {}),
      insecureRegistries: insecure, ...(farm ? { farm } : {}), log, policy,
    });
  } catch (e) {
    await pool.close();
    if (e instanceof ApiError || (e as NodeJS.ErrnoException).code !== undefined) throw new SlipwayError('ERR_USAGE', `cannot listen: ${(e as Error).message}`);
    throw e;
  }
  if (farm) process.stderr.write(`build farm: queue on ${redactUrl(farm.redisUrl)}, registry ${farm.registry}\n`);
  for (const a of server.addresses) process.stdout.write(`Slipway Engine API ${API_VERSION} listening on ${a}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await server.close();
  await pool.close();
  return 0;
}

/** `--tenants-file FILE`, read again on SIGHUP (it is also checked for changes on use). */
async function openTenants(file: string | undefined): Promise<TenantTokens | undefined> {
  if (file === undefined) return undefined;
  const tenants = await TenantTokens.open(file, (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`));
  process.on('SIGHUP', () => void tenants.reload());
  return tenants;
}

/** The farm's registry credentials (what `slipway login` stored) and its routing flags. */
async function farmWithOptions(farm: FarmConfig | undefined, v: { 'no-affinity'?: boolean | undefined; 'affinity-wait'?: string | undefined }): Promise<FarmConfig | undefined> {
  if (!farm) {
    if (v['no-affinity'] || v['affinity-wait'] !== undefined) throw new SlipwayError('ERR_USAGE', '--no-affinity and --affinity-wait need the farm: --redis URL --registry HOST');
    return undefined;
  }
  let waitMs: number | undefined;
  if (v['affinity-wait'] !== undefined) {
    const n = Number(v['affinity-wait']);
    if (!Number.isFinite(n) || n < 0 || n > 3600) throw new SlipwayError('ERR_USAGE', '--affinity-wait must be a number of seconds (0 to 3600)');
    waitMs = Math.round(n * 1000);
  }
  return {
    ...farm, registryCredentials: await readCredentials(configDir(), farm.registry),
    ...(v['no-affinity'] ? { affinity: false } : {}), ...(waitMs !== undefined ? { affinityWaitMs: waitMs } : {}),
  };
}

/** A Redis URL without its password, for logs. */
function redactUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, (_m, auth: string) => `//${auth.includes(':') ? `${auth.slice(0, auth.indexOf(':'))}:***` : auth}@`);
}
