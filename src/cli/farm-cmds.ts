import { parseArgs } from 'node:util';
import { SlipwayError } from '../errors.js';
import { redisUrl, registryHost } from '../farm/connection.js';
import { buildInfo, farmStatus, followBuild, submitBuild, type BuildInfo } from '../farm/submit.js';
import { startFarmWorker } from '../farm/worker.js';
import { table } from './format.js';
import type { CommandEnv } from './command-env.js';
import { parseBuildArgs } from './args.js';
import { parseSecrets } from './session-flags.js';
import { SANDBOX_FLAGS, parseAllow, sandboxFromFlags } from '../sandbox/limits.js';
import type { BuildJobResult } from '../farm/job.js';
import { TENANT_NAME } from '../farm/namespace.js';
import type { Credentials } from '../registry/client.js';
import { configDir, readCredentials } from '../registry/auth.js';
import { followRemote, readSubmitToken, submitRemote } from './submit-remote.js';

/** `--shared-tenant NAME`: the tenant whose records and images every tenant may read. */
function sharedTenant(v: string): string {
  if (!TENANT_NAME.test(v)) throw new SlipwayError('ERR_USAGE', `invalid --shared-tenant ${JSON.stringify(v)}: lower-case letters and digits, separated by '_' or '-'`);
  return v;
}

function needRegistry(flag: string | undefined): string {
  const r = registryHost(flag);
  if (!r) throw new SlipwayError('ERR_USAGE', 'the farm needs a registry: --registry HOST[:PORT] or $SLIPWAY_REGISTRY');
  return r;
}


/** `--affinity-wait SECONDS` (default 2). */
function affinityWait(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || n > 3600) throw new SlipwayError('ERR_USAGE', '--affinity-wait must be a number of seconds (0 to 3600)');
  return Math.round(n * 1000);
}

/** Prints a finished build's outcome; the exit status. */
function reportResult(jobId: string, result: BuildJobResult): number {
  if (result.ok) {
    process.stdout.write(`Build ${jobId} succeeded on ${result.worker}: sha256:${result.imageId}\n`);
    for (const p of result.pushed) process.stdout.write(`Pushed ${p.tag} ${p.digest}\n`);
    return 0;
  }
  process.stderr.write(`Error: ${result.error.message}\n`);
  return result.error.exitCode ?? 1;
}

/**
 * `slipway submit`: queue a build on the farm; `--wait` follows it and exits with its status.
 * With `--server` it goes through a `serve`'s farm API with a tenant's token (the tenant is the
 * token's); without, straight to Redis as the operator (tenant `default`).
 */
export async function submitCommand(args: string[], _env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      tag: { type: 'string', short: 't', multiple: true }, file: { type: 'string', short: 'f' }, 'build-arg': { type: 'string', multiple: true },
      target: { type: 'string' }, push: { type: 'boolean' }, wait: { type: 'boolean' }, 'no-cache': { type: 'boolean' },
      redis: { type: 'string' }, registry: { type: 'string' }, server: { type: 'string' }, 'token-file': { type: 'string' },
      'no-affinity': { type: 'boolean' }, 'affinity-wait': { type: 'string' }, tenant: { type: 'string' }, secret: { type: 'string', multiple: true },
    },
    allowPositionals: true,
  });
  if (values.tenant !== undefined) throw new SlipwayError('ERR_USAGE', '--tenant is gone: a build belongs to the tenant its token names (--server URL --token-file FILE)');
  if (positionals.length !== 1) throw new SlipwayError('ERR_USAGE', '"slipway submit" requires exactly 1 argument: CONTEXT');
  const buildArgs = parseBuildArgs(values['build-arg'] ?? []);
  const secrets = await parseSecrets(values.secret ?? []);
  if (values.server !== undefined) {
    if (values.redis !== undefined || values.registry !== undefined || values['no-affinity'] || values['affinity-wait'] !== undefined) {
      throw new SlipwayError('ERR_USAGE', '--server goes through the farm API: --redis, --registry, --no-affinity and --affinity-wait are the server\'s to set');
    }
    const server = { url: values.server, token: await readSubmitToken(values['token-file']) };
    const q = new URLSearchParams();
    for (const t of values.tag ?? []) q.append('t', t);
    if (values.file) q.set('dockerfile', values.file);
    if (Object.keys(buildArgs).length) q.set('buildargs', JSON.stringify(buildArgs));
    if (values.target) q.set('target', values.target);
    if (values.push) q.set('push', '1');
    if (values['no-cache']) q.set('nocache', '1');
    const sub = await submitRemote(server, positionals[0]!, q, values.file ?? 'Dockerfile', secrets);
    process.stdout.write(`${sub.deduplicated ? 'Already queued' : 'Submitted'}: ${sub.id}\n`);
    return values.wait ? reportResult(sub.id, await followRemote(server, sub.id, (t) => process.stdout.write(t))) : 0;
  }
  const redis = redisUrl(values.redis);
  const wait = affinityWait(values['affinity-wait']);
  const sub = await submitBuild({
    redisUrl: redis, registry: needRegistry(values.registry), contextDir: positionals[0]!, ...(values.file ? { dockerfile: values.file } : {}),
    tags: values.tag ?? [], buildArgs, ...(values.target ? { target: values.target } : {}),
    noCache: values['no-cache'] ?? false, push: values.push ?? false, affinity: !values['no-affinity'], ...(wait !== undefined ? { affinityWaitMs: wait } : {}),
    registryCredentials: await farmCredentials(needRegistry(values.registry)),
    ...(secrets.size > 0 ? { secrets } : {}),
  });
  process.stdout.write(`${sub.deduplicated ? 'Already queued' : 'Submitted'}: ${sub.jobId}${sub.routedTo ? ` (offered first to ${sub.routedTo}, which holds its cache)` : ''}\n`);
  return values.wait ? reportResult(sub.jobId, await followBuild(redis, sub.jobId, (t) => process.stdout.write(t))) : 0;
}

/** The farm registry's credentials: what `slipway login` stored for it (the process' own). */
async function farmCredentials(registry: string): Promise<Credentials | undefined> {
  return readCredentials(configDir(), registry);
}

/** `slipway worker`: a farm worker process. */
export async function workerCommand(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      redis: { type: 'string' }, registry: { type: 'string' }, concurrency: { type: 'string' }, threads: { type: 'string' },
      'metrics-port': { type: 'string' }, 'metrics-host': { type: 'string' }, 'shared-tenant': { type: 'string' }, 'lock-duration': { type: 'string' }, 'shutdown-timeout': { type: 'string' }, name: { type: 'string' },
      allow: { type: 'string', multiple: true }, ...SANDBOX_FLAGS,
    },
  });
  const policy = { sandbox: sandboxFromFlags(values), entitlements: parseAllow(values.allow) };
  if (values['metrics-host'] !== undefined && values['metrics-port'] === undefined) throw new SlipwayError('ERR_USAGE', '--metrics-host needs --metrics-port');
  const num = (v: string | undefined, name: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new SlipwayError('ERR_USAGE', `--${name} must be a number`);
    return n;
  };
  const w = await startFarmWorker({
    redisUrl: redisUrl(values.redis), registry: needRegistry(values.registry), root: layout.root,
    concurrency: num(values.concurrency, 'concurrency') ?? 1,
    ...(values.threads !== undefined ? { threads: num(values.threads, 'threads')! } : {}),
    ...(values['metrics-port'] !== undefined ? { metricsPort: num(values['metrics-port'], 'metrics-port')! } : {}),
    ...(values['lock-duration'] !== undefined ? { lockDurationMs: num(values['lock-duration'], 'lock-duration')! * 1000 } : {}),
    ...(values['shutdown-timeout'] !== undefined ? { shutdownTimeoutMs: num(values['shutdown-timeout'], 'shutdown-timeout')! * 1000 } : {}),
    ...(values.name ? { name: values.name } : {}),
    ...(values['metrics-host'] !== undefined ? { metricsHost: values['metrics-host'] } : {}),
    ...(values['shared-tenant'] !== undefined ? { sharedTenant: sharedTenant(values['shared-tenant']) } : {}),
    registryCredentials: await farmCredentials(needRegistry(values.registry)),
    policy,
  });
  if (w.metricsPort !== undefined) process.stderr.write(`metrics on http://${values['metrics-host'] ?? '127.0.0.1'}:${w.metricsPort}/metrics\n`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      process.stderr.write(`worker ${w.name}: stopping\n`);
      w.close().then(resolve, resolve);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  return 0;
}

/** `slipway farm status [BUILD…]`: the queue and its workers, or what the queue knows of some builds. */
export async function farmCommand(args: string[], _env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { redis: { type: 'string' }, format: { type: 'string' } }, allowPositionals: true });
  if (positionals[0] !== 'status') throw new SlipwayError('ERR_USAGE', 'usage: slipway farm status [BUILD...] [--redis URL] [--format json]');
  const ids = positionals.slice(1);
  if (ids.length > 0) return await buildsStatus(redisUrl(values.redis), ids, values.format === 'json');
  const st = await farmStatus(redisUrl(values.redis));
  if (values.format === 'json') {
    process.stdout.write(`${JSON.stringify(st)}\n`);
    return 0;
  }
  process.stdout.write(`Queue: ${st.counts['waiting'] ?? 0} waiting, ${st.counts['active'] ?? 0} running, ${st.counts['delayed'] ?? 0} delayed, ${st.counts['completed'] ?? 0} completed, ${st.counts['failed'] ?? 0} failed\n`);
  process.stdout.write(`Workers: ${st.workers.length}\n`);
  if (st.workers.length) process.stdout.write(table([['NAME', 'ADDRESS'], ...st.workers.map((w) => [w.name, w.addr])]));
  const r = st.routing;
  const pct = (x: number | null) => (x === null ? '-' : `${Math.round(x * 100)} %`);
  process.stdout.write(`Routed by cache affinity: ${pct(r.routedShare)} of ${r.submitted} builds submitted\n`);
  if (r.workers.length) {
    process.stdout.write(table([['WORKER', 'ALIVE', 'BUILDS', 'HIT RATE', 'BY AFFINITY', 'CHAINS HELD'],
      ...r.workers.map((w) => [w.name, w.alive ? 'yes' : 'no', String(w.builds), pct(w.hitRate), w.builds ? pct(w.routed / w.builds) : '-', String(w.heldKeys)])]));
  }
  if (st.running.length) {
    process.stdout.write('Running builds:\n');
    process.stdout.write(table([['BUILD', 'TAGS', 'STARTED'], ...st.running.map((r) => [r.id, r.tags.join(',') || '<none>', r.startedAt ? new Date(r.startedAt).toISOString() : ''])]));
  }
  return 0;
}

async function buildsStatus(redis: string, ids: string[], json: boolean): Promise<number> {
  const infos = await buildInfo(redis, ids);
  if (json) {
    for (const [i, info] of infos.entries()) process.stdout.write(`${JSON.stringify(info ?? { id: ids[i], state: 'unknown' })}\n`);
  } else {
    const outcome = (b: BuildInfo) => (b.result ? (b.result.ok ? 'success' : `failure: ${b.result.error.message}`) : (b.failedReason ?? ''));
    process.stdout.write(table([['BUILD', 'STATE', 'ATTEMPTS', 'WORKER', 'RESULT'], ...infos.map((b, i) => (b
      ? [b.id, b.state, String(b.attemptsStarted), b.worker ?? '', outcome(b)]
      : [ids[i]!, 'unknown', '', '', '']))]));
  }
  return infos.every((b) => b !== undefined) ? 0 : 1;
}
