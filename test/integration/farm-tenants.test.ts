/**
 * A farm strangers share: tenants come from bearer tokens (`serve --tenants-file`, reloaded
 * without a restart), a forged tenant is refused, a request without a valid token queues
 * nothing, tenant B never gets a hit on tenant A's step (on the same worker, whose local store
 * is per tenant, and through the farm's Redis and registry), the operator's shared namespace is
 * readable by all, and the workers run as a Redis ACL user limited to the farm's prefix and log
 * in to the registry as themselves. RUN executions are counted by a server in its own network
 * namespace, not from Slipway's reports.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { makeContext, slipway } from '../support/cli.js';
import { FarmCluster } from '../support/farm-cluster.js';
import { countHostMissing, startCountHost, type CountHost } from '../support/count-host.js';
import { filesHolding } from '../support/secret-search.js';

const missing = countHostMissing();
let cluster: FarmCluster;
let count: CountHost;
const tok = (t: string) => `${t}-${crypto.randomBytes(12).toString('hex')}`;
const TOKENS = { alice: tok('alice'), bob: tok('bob'), public: tok('public'), carol: tok('carol') };

before(async () => {
  if (missing) return;
  [cluster, count] = await Promise.all([FarmCluster.start(['w1']), startCountHost()]);
  await cluster.startServe([`alice ${TOKENS.alice}`, `bob ${TOKENS.bob}`, `public ${TOKENS.public}`]);
});

after(async () => {
  await cluster?.stop();
  await count?.stop();
});

function redisCli(...args: string[]): string {
  return execFileSync('redis-cli', ['-p', String(cluster.redis.port), ...args]).toString().trim();
}

/** What the farm holds in Redis, as a count of its queued jobs and submissions. */
function farmJobs(): string {
  return `${redisCli('--scan', '--pattern', 'slipway:slipway-builds*:b-*').split('\n').filter(Boolean).length}/${redisCli('HGET', 'slipway:stats', 'submitted')}`;
}

async function api(method: string, p: string, token: string | undefined, body?: Buffer): Promise<{ status: number; json: any }> {
  const res = await fetch(`${cluster.serve!.url}${p}`, { method, ...(token ? { headers: { authorization: `Bearer ${token}` } } : {}), ...(body ? { body: new Uint8Array(body) } : {}) });
  const text = await res.text();
  let json: unknown = text;
  try { json = JSON.parse(text); } catch { /* a stream of lines */ }
  return { status: res.status, json };
}

async function contextTar(files: Record<string, string>): Promise<Buffer> {
  const dir = await makeContext(files);
  cluster.temps.push(dir);
  return execFileSync('tar', ['-C', dir, '-cf', '-', '.']);
}

/** Submits through the API as `token`'s tenant and waits for the result. */
async function build(token: string, files: Record<string, string>, query = ''): Promise<{ id: string; result: any }> {
  const sub = await api('POST', `/slipway/v1/builds?${query}`, token, await contextTar(files));
  assert.ok(sub.status === 201 || sub.status === 200, JSON.stringify(sub));
  const events = await api('GET', `/slipway/v1/builds/${sub.json.id}/events`, token);
  const lines = String(events.json).trim().split('\n').map((l) => JSON.parse(l));
  const result = lines.find((l) => l.result)?.result;
  assert.ok(result, String(events.json));
  return { id: sub.json.id, result };
}

const runStep = (result: any, text: RegExp) => result.steps.find((s: any) => text.test(s.text));

test('no token or a wrong one: 401 and nothing queued; a forged tenant is refused; a tenant may not use the server\'s own store', { skip: missing }, async () => {
  const before = farmJobs();
  const tar = await contextTar({ Dockerfile: 'FROM busybox\nRUN echo unauthenticated\n' });
  assert.equal((await api('POST', '/slipway/v1/builds', undefined, tar)).status, 401);
  assert.equal((await api('POST', '/slipway/v1/builds', 'not-a-token-of-anyone-here', tar)).status, 401);
  const forged = await api('POST', '/slipway/v1/builds?tenant=bob', TOKENS.alice, tar);
  assert.equal(forged.status, 400);
  assert.match(forged.json.message, /tenant is not a parameter/);
  assert.equal(farmJobs(), before);
  const images = await api('GET', '/images/json', TOKENS.alice);
  assert.equal(images.status, 403);
  assert.match(images.json.message, /tenant alice may use only the farm's endpoints/);
});

test('tenant B gets no hit on tenant A\'s step, on the same worker; each reads only its own builds and images', { skip: missing }, async () => {
  const name = `iso-${crypto.randomBytes(4).toString('hex')}`;
  const files = { Dockerfile: `FROM busybox\nRUN wget -q -O- ${count.url}/hit/${name} && echo ${name} > /step\n` };
  const a = await build(TOKENS.alice, files, 't=app&push=1');
  assert.ok(a.result.ok, JSON.stringify(a.result));
  assert.deepEqual(a.result.pushed.map((p: any) => p.tag), [`${cluster.reg.host}/alice/app`]);
  const b = await build(TOKENS.bob, files);
  assert.ok(b.result.ok, JSON.stringify(b.result));
  assert.equal(b.result.worker, a.result.worker);
  assert.equal(runStep(b.result, /RUN wget/).hit, false);
  assert.equal((await count.counts())[name], 2, 'bob\'s RUN ran: alice\'s was not served to him');
  const again = await build(TOKENS.alice, files);
  assert.equal(runStep(again.result, /RUN wget/).hit, true);
  assert.equal((await count.counts())[name], 2);
  // Records live under each tenant's prefix; builds are visible to their tenant only.
  assert.ok(redisCli('--scan', '--pattern', 'slipway:t:alice:cache:*').length > 0);
  assert.ok(redisCli('--scan', '--pattern', 'slipway:t:bob:cache:*').length > 0);
  assert.equal((await api('GET', `/slipway/v1/builds/${a.id}`, TOKENS.bob)).status, 404);
  assert.equal((await api('GET', `/slipway/v1/builds/${a.id}/events`, TOKENS.bob)).status, 404);
  assert.equal((await api('GET', `/slipway/v1/builds/${a.id}`, TOKENS.alice)).json.tenant, 'alice');
  // A tag that names another tenant's repository stays inside the submitter's namespace.
  const evil = await build(TOKENS.alice, files, `t=${encodeURIComponent(`${cluster.reg.host}/bob/app`)}&push=1`);
  assert.deepEqual(evil.result.pushed.map((p: any) => p.tag), [`${cluster.reg.host}/alice/bob/app`]);
});

test('the operator\'s shared namespace is read by every tenant, and written only by its own', { skip: missing }, async () => {
  const name = `shared-${crypto.randomBytes(4).toString('hex')}`;
  const files = { Dockerfile: `FROM busybox\nRUN wget -q -O- ${count.url}/hit/${name} > /base\n` };
  const p = await build(TOKENS.public, files);
  assert.ok(p.result.ok, JSON.stringify(p.result));
  const b = await build(TOKENS.bob, files);
  assert.equal(runStep(b.result, /RUN wget/).hit, true);
  assert.equal((await count.counts())[name], 1);
  // Bob's hit is not copied into the shared namespace nor into his own: only fetched.
  assert.equal(redisCli('--scan', '--pattern', 'slipway:t:public:cache:*').split('\n').filter(Boolean).length >= 1, true);
});

test('the tenants file is reloaded when it changes and on SIGHUP, without a restart', { skip: missing }, async () => {
  const serve = cluster.serve!;
  assert.equal((await api('GET', '/_ping', TOKENS.carol)).status, 401);
  await fs.appendFile(serve.tokensFile, `carol ${TOKENS.carol}\n`);
  const t0 = Date.now();
  while ((await api('GET', '/_ping', TOKENS.carol)).status !== 200) {
    assert.ok(Date.now() - t0 < 5000, 'carol\'s token was not taken up');
    await new Promise((r) => setTimeout(r, 200));
  }
  // A file that does not parse keeps the tokens in force.
  const good = await fs.readFile(serve.tokensFile, 'utf8');
  await fs.writeFile(serve.tokensFile, `${good}bad line with too many words\n`);
  serve.child.kill('SIGHUP');
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal((await api('GET', '/_ping', TOKENS.carol)).status, 200);
  assert.match(serve.output(), /not reloaded, the previous tokens stay in force: .*tenants:\d+: expected/);
  // Alice removed; the file's stamp may not change within its mtime granularity, SIGHUP reads it anyway.
  await fs.writeFile(serve.tokensFile, good.split('\n').filter((l) => !l.startsWith('alice ')).join('\n'));
  serve.child.kill('SIGHUP');
  const t1 = Date.now();
  while ((await api('GET', '/_ping', TOKENS.alice)).status !== 401) {
    assert.ok(Date.now() - t1 < 5000, 'alice\'s token still works');
    await new Promise((r) => setTimeout(r, 200));
  }
});

test('submit --server sends its token; --tenant is refused', { skip: missing }, async () => {
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo from-the-cli > /cli\n' });
  cluster.temps.push(ctx);
  const tokenFile = path.join(ctx, '..', `token-${crypto.randomBytes(3).toString('hex')}`);
  await fs.writeFile(tokenFile, `${TOKENS.bob}\n`, { mode: 0o600 });
  cluster.temps.push(tokenFile);
  const url = cluster.serve!.url.replace('http://', 'tcp://');
  const r = await slipway(cluster.seed, ['submit', '--server', url, '--token-file', tokenFile, '--wait', '-t', 'cli', ctx]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Successfully built/);
  const bad = await slipway(cluster.seed, ['submit', '--server', url, ctx], { env: { ...process.env, SLIPWAY_TOKEN: 'wrong-token-wrong-token' } });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^Error: the farm answered 401/m);
  const forged = await slipway(cluster.seed, ['submit', '--server', url, '--tenant', 'alice', ctx]);
  assert.equal(forged.code, 1);
  assert.match(forged.stderr, /--tenant is gone: a build belongs to the tenant its token names/);
});

test('submit --server --secret: sealed by the CLI for the workers\' keys; the step gets it, serve and Redis see ciphertext only', { skip: missing }, async () => {
  const value = `tenant-secret-${crypto.randomBytes(12).toString('hex')}`;
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=tok,required sha256sum /run/secrets/tok\n' });
  cluster.temps.push(ctx);
  const secretFile = path.join(ctx, '..', `secret-${crypto.randomBytes(3).toString('hex')}`);
  await fs.writeFile(secretFile, value, { mode: 0o600 });
  cluster.temps.push(secretFile);
  const url = cluster.serve!.url.replace('http://', 'tcp://');
  const env = { env: { ...process.env, SLIPWAY_TOKEN: TOKENS.alice } };
  const r = await slipway(cluster.seed, ['submit', '--server', url, '--wait', '--secret', `id=tok,src=${secretFile}`, ctx], env);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.ok(r.stdout.includes(`${crypto.createHash('sha256').update(value).digest('hex')}  /run/secrets/tok`), r.stdout);
  const needle = Buffer.from(value);
  assert.ok(!(r.stdout + r.stderr + cluster.serve!.output()).includes(value), 'not in any output');
  await new Promise((res) => setTimeout(res, 200));
  assert.deepEqual(await filesHolding(cluster.redis.dir, needle), [], 'not in Redis (its append-only file holds every write)');
  assert.ok((await filesHolding(cluster.redis.dir, Buffer.from('recipients'))).length > 0, 'the search reads the Redis data');
  assert.deepEqual(await filesHolding(cluster.serve!.root, needle), [], 'not in serve\'s store');
  // Without a worker key the header is refused field by field; junk is a 400, not a queued job.
  const tar = await contextTar({ Dockerfile: 'FROM busybox\nRUN true\n' });
  const res = await fetch(`${cluster.serve!.url}/slipway/v1/builds`, { method: 'POST', headers: { authorization: `Bearer ${TOKENS.alice}`, 'x-slipway-sealed-secrets': Buffer.from('{"v":1,"recipients":[]}').toString('base64') }, body: new Uint8Array(tar) });
  assert.equal(res.status, 400);
  assert.match(((await res.json()) as { message: string }).message, /invalid sealed secrets: 1 to 256 recipients/);
});

test('the workers\' Redis user reaches the farm\'s keys only', { skip: missing }, () => {
  const url = new URL(cluster.workerRedisUrl);
  const as = (...args: string[]) => execFileSync('redis-cli', ['-p', url.port, '--user', url.username, '--pass', url.password, '--no-auth-warning', ...args]).toString().trim();
  assert.match(as('GET', 'not-the-farms'), /NOPERM/);
  assert.match(as('FLUSHALL'), /NOPERM/);
  assert.match(as('CONFIG', 'GET', 'dir'), /NOPERM/);
  assert.doesNotMatch(as('EXISTS', 'slipway:stats'), /NOPERM/);
});
