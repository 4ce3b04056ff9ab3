/**
 * `docker push`, `docker pull` and `docker login` through `slipway serve`: the real docker CLI
 * 28 against two servers (separate stores) and real docker-registry instances on free loopback
 * ports. Skipped, with the reason printed, where the CLI or the registry is missing.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import {
  DOCKER, cleanup, docker, dockerEnv, dockerMissing, makeContext, startServer, storeWithBusybox, tempDir, type Server,
} from '../support/engine-api.js';
import { blobUploads, missingTools, startRegistry, type TestRegistry } from '../support/registry.js';
import { runProcess } from '../support/cli.js';

const missing = dockerMissing() ?? (missingTools().length > 0 ? `missing ${missingTools().join(', ')} (scripts/install-deps.sh)` : undefined);
if (missing) console.log(`# skipping Engine API registry tests: ${missing}`);
const skip = missing;

const SEED = 'FROM busybox\nRUN touch scooby_snacks.txt\n';
/** A registry name that never resolves (RFC 2606), to see which scheme the engine picks for it. */
const UNRESOLVABLE = 'registry.invalid:5000';

let reg: TestRegistry | undefined;
let pusher: Server | undefined;
let puller: Server | undefined;
let pushEnv: NodeJS.ProcessEnv = {};
let pullEnv: NodeJS.ProcessEnv = {};
let pushRoot = '';

before(async () => {
  if (skip) return;
  reg = await startRegistry();
  pushRoot = await storeWithBusybox();
  const sock = async () => `unix://${path.join(await tempDir('sw-sock-'), 'd.sock')}`;
  pusher = await startServer(pushRoot, ['-H', await sock(), '--insecure-registry', UNRESOLVABLE]);
  // The second server starts from an empty store: everything it has, it pulled.
  puller = await startServer(await tempDir('sw-root-'), ['-H', await sock()]);
  pushEnv = await dockerEnv(pusher.host);
  pullEnv = await dockerEnv(puller.host);
});

after(async () => {
  await pusher?.stop();
  await puller?.stop();
  await reg?.stop();
  await cleanup();
});

/** Runs the docker CLI with `input` on its stdin (`login --password-stdin`). */
function dockerWithInput(env: NodeJS.ProcessEnv, args: string[], input: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return runProcess(DOCKER, args, { env, input });
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('docker push prints dockerd\'s transcript; a second push uploads nothing', { skip }, async () => {
  const ref = `${reg!.host}/thoward/scooby_snacks`;
  const b = await docker(pushEnv, ['build', '-q', '-t', ref, await makeContext({ Dockerfile: SEED })]);
  assert.equal(b.code, 0, b.stderr);

  const p = await docker(pushEnv, ['push', ref]);
  assert.equal(p.code, 0, p.stderr);
  const m = new RegExp([
    '^Using default tag: latest',
    `The push refers to repository \\[${escape(ref)}\\]`,
    '([0-9a-f]{12}): Preparing',
    '([0-9a-f]{12}): Preparing',
    '(?:[0-9a-f]{12}: Pushed\n){2}latest: digest: (sha256:[0-9a-f]{64}) size: \\d+\n$',
  ].join('\n')).exec(p.stdout);
  assert.ok(m, p.stdout);
  const tags = await (await fetch(`http://${reg!.host}/v2/thoward/scooby_snacks/tags/list`)).json() as { tags: string[] };
  assert.deepEqual(tags.tags, ['latest']);

  const offset = await reg!.logOffset();
  const again = await docker(pushEnv, ['push', ref]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout.split('\n').filter((l) => l.endsWith(': Layer already exists')).length, 2, again.stdout);
  assert.match(again.stdout, new RegExp(`^latest: digest: ${m[3]} size: \\d+$`, 'm'));
  assert.deepEqual(blobUploads(await reg!.requestsSince(offset)), [], 'a second push uploads no blob');
});

test('docker pull into a second server with an empty store; docker images shows it; a repeat is up to date', { skip }, async () => {
  const ref = `${reg!.host}/thoward/scooby_snacks`;
  // The first test pushed it; push again here so this test stands alone.
  assert.equal((await docker(pushEnv, ['build', '-q', '-t', ref, await makeContext({ Dockerfile: SEED })])).code, 0);
  assert.equal((await docker(pushEnv, ['push', ref])).code, 0);

  const p = await docker(pullEnv, ['pull', ref]);
  assert.equal(p.code, 0, p.stderr);
  const lines = p.stdout.trimEnd().split('\n');
  assert.deepEqual(lines.slice(0, 2), ['Using default tag: latest', 'latest: Pulling from thoward/scooby_snacks']);
  assert.equal(lines.filter((l) => / Pull complete$/.test(l)).length, 2, p.stdout);
  assert.match(p.stdout, /^Digest: sha256:[0-9a-f]{64}$/m);
  assert.deepEqual(lines.slice(-2), [`Status: Downloaded newer image for ${ref}:latest`, `${ref}:latest`]);

  const images = await docker(pullEnv, ['images']);
  assert.equal(images.code, 0, images.stderr);
  assert.match(images.stdout, new RegExp(`^${escape(ref)}\\s+latest\\s+[0-9a-f]{12}\\s`, 'm'));
  // Same layers on both sides (image ids may differ: a pulled id hashes the config, a built one the step).
  const layers = (env: NodeJS.ProcessEnv) => docker(env, ['image', 'inspect', '--format', '{{json .RootFS.Layers}}', ref]);
  assert.deepEqual(JSON.parse((await layers(pullEnv)).stdout), JSON.parse((await layers(pushEnv)).stdout));

  const again = await docker(pullEnv, ['pull', ref]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout.split('\n').filter((l) => / Already exists$/.test(l)).length, 2, again.stdout);
  assert.match(again.stdout, new RegExp(`^Status: Image is up to date for ${escape(ref)}:latest$`, 'm'));

  const unknown = await docker(pullEnv, ['pull', `${reg!.host}/thoward/nothing_here`]);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, new RegExp(`Error response from daemon: manifest for ${escape(reg!.host)}/thoward/nothing_here:latest not found: manifest unknown`));
  const all = await docker(pullEnv, ['pull', '-a', ref]);
  assert.equal(all.code, 1);
  assert.match(all.stderr, /docker pull -a\) is not implemented by slipway/);
});

test('docker push of a root repository prints the seed\'s refusal and exits 1; a missing image is dockerd\'s error', { skip }, async () => {
  assert.equal((await docker(pushEnv, ['tag', 'busybox', 'scooby_snacks'])).code, 0);
  for (const name of ['scooby_snacks', 'docker.io/library/scooby_snacks:latest']) {
    const r = await docker(pushEnv, ['push', name]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, name.includes(':latest') ? '' : 'Using default tag: latest\n');
    assert.equal(r.stderr, 'Impossible to push a "root" repository. Please rename your repository in <user>/<repo> (ex: thoward/scooby_snacks)\n');
  }
  const none = await docker(pushEnv, ['push', `${reg!.host}/thoward/nothing_here`]);
  assert.equal(none.code, 1);
  assert.match(none.stderr, new RegExp(`^Error response from daemon: An image does not exist locally with the tag: ${escape(reg!.host)}/thoward/nothing_here\n$`));
});

test('--insecure-registry reaches the engine: plain HTTP for the named registry, HTTPS for others', { skip }, async () => {
  assert.equal((await docker(pushEnv, ['tag', 'busybox', `${UNRESOLVABLE}/thoward/x`])).code, 0);
  assert.equal((await docker(pushEnv, ['tag', 'busybox', 'other.invalid:5000/thoward/x'])).code, 0);
  const insecure = await docker(pushEnv, ['push', `${UNRESOLVABLE}/thoward/x`]);
  assert.equal(insecure.code, 1);
  assert.match(insecure.stderr, new RegExp(`http://${escape(UNRESOLVABLE)}/v2/`));
  const secure = await docker(pushEnv, ['push', 'other.invalid:5000/thoward/x']);
  assert.equal(secure.code, 1);
  assert.match(secure.stderr, /https:\/\/other\.invalid:5000\/v2\//);
});

test('a registry that wants a login: push fails in the stream, docker login checks through the engine, then push works', { skip }, async () => {
  const locked = await startRegistry({ htpasswd: { user: 'thoward', password: 's3cret' } });
  try {
    const env = await dockerEnv(pusher!.host);
    const ref = `${locked.host}/thoward/scooby_snacks`;
    assert.equal((await docker(env, ['tag', 'busybox', ref])).code, 0);
    // A 401 would make CLI 28 prompt for a login (and wait forever without a terminal): the
    // refusal comes in the stream instead, as with dockerd.
    const denied = await docker(env, ['push', ref]);
    assert.equal(denied.code, 1);
    assert.match(denied.stdout, /The push refers to repository/);
    assert.match(denied.stderr, /unauthorized: authentication required \(log in with 'docker login 127\.0\.0\.1:\d+'\)/);
    assert.doesNotMatch(denied.stdout, /Username/);

    const wrong = await dockerWithInput(env, ['login', '-u', 'thoward', '--password-stdin', locked.host], 'nope\n');
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /Error response from daemon: login to 127\.0\.0\.1:\d+ failed: unauthorized/);
    const login = await dockerWithInput(env, ['login', '-u', 'thoward', '--password-stdin', locked.host], 's3cret\n');
    assert.equal(login.code, 0, login.stderr);
    assert.match(login.stdout, /Login Succeeded/);
    const cfg = JSON.parse(await fs.readFile(path.join(env['DOCKER_CONFIG']!, 'config.json'), 'utf8')) as { auths: Record<string, unknown> };
    assert.ok(cfg.auths[locked.host], JSON.stringify(cfg));

    const ok = await docker(env, ['push', ref]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^latest: digest: sha256:[0-9a-f]{64} size: \d+$/m);
    // The pulling server gets the credentials the same way: X-Registry-Auth from the CLI's config.
    const pullCfg = await dockerEnv(puller!.host, { auths: cfg.auths });
    const anon = await docker(pullEnv, ['pull', ref]);
    assert.equal(anon.code, 1);
    assert.match(anon.stderr, /Error response from daemon: pull access denied for 127\.0\.0\.1:\d+\/thoward\/scooby_snacks, repository does not exist or may require 'docker login'/);
    const pulled = await docker(pullCfg, ['pull', ref]);
    assert.equal(pulled.code, 0, pulled.stderr);
  } finally {
    await locked.stop();
  }
});
