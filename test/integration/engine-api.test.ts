/**
 * The real docker CLI (28, client only, legacy builder) against `slipway serve`: what it prints
 * and how it exits. Skipped, with the reason printed, where /usr/local/bin/docker is absent.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import crypto from 'node:crypto';
import {
  cleanup, docker, dockerChild, dockerEnv, dockerMissing, makeContext, processesMentioning, rawHttp, serveFails, startServer,
  storeWithBusybox, tempDir, waitFor, type Server,
} from '../support/engine-api.js';

const skip = dockerMissing();
if (skip) console.log(`# skipping Engine API tests: ${skip}`);

const SEED = 'FROM busybox\nRUN touch scooby_snacks.txt\n';

let root = '';
let server: Server | undefined;
let env: NodeJS.ProcessEnv = {};

before(async () => {
  if (skip) return;
  root = await storeWithBusybox();
  server = await startServer(root, ['-H', `unix://${path.join(await tempDir('sw-sock-'), 'd.sock')}`]);
  env = await dockerEnv(server.host);
});

after(async () => {
  await server?.stop();
  await cleanup();
});

async function repositories(): Promise<Record<string, Record<string, string>>> {
  return JSON.parse(await fs.readFile(path.join(root, 'repositories'), 'utf8')).Repositories;
}

/** Image ids in the store's graph (what a cancelled build must not add to). */
async function graphIds(): Promise<string[]> {
  return (await fs.readdir(path.join(root, 'graph'))).filter((n) => n !== '_tmp').sort();
}

test('docker version and info: the server is Slipway, API 1.50', { skip }, async () => {
  assert.equal((await fs.stat(server!.socket!)).mode & 0o777, 0o660);
  const v = await docker(env, ['version']);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stdout, /^Server: Slipway$/m);
  assert.match(v.stdout, /API version:\s+1\.50 \(minimum version 1\.24\)/);
  const i = await docker(env, ['info']);
  assert.equal(i.code, 0, i.stderr);
  assert.match(i.stdout, /Operating System: Slipway/);
});

test('docker build prints the seed transcript; a rebuild is all cache; -q prints only the id', { skip }, async () => {
  const ctx = await makeContext({ Dockerfile: SEED });
  const b = await docker(env, ['build', '-t', 'scooby_snacks', ctx]);
  assert.equal(b.code, 0, b.stderr);
  const busybox = (await repositories())['busybox']!['latest']!;
  const m = new RegExp([
    // The CLI's own progress line ends in \r (it redraws it on a terminal).
    '^Sending build context to Docker daemon {2}2\\.048kB\r*',
    'Step 1/2 : FROM busybox',
    ` ---> ${busybox.slice(0, 12)}`,
    'Step 2/2 : RUN touch scooby_snacks.txt',
    ' ---> Running in ([0-9a-f]{12})',
    'Removing intermediate container \\1',
    ' ---> ([0-9a-f]{12})',
    'Successfully built \\2',
    'Successfully tagged scooby_snacks:latest\n$',
  ].join('\n')).exec(b.stdout);
  assert.ok(m, `transcript:\n${b.stdout}`);
  assert.match(b.stderr, /legacy builder is deprecated/);
  const id = (await repositories())['scooby_snacks']!['latest']!;
  assert.equal(id.slice(0, 12), m[2]);

  const again = await docker(env, ['build', '-t', 'scooby_snacks', ctx]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /Step 2\/2 : RUN touch scooby_snacks.txt\n ---> Using cache\n ---> ([0-9a-f]{12})\nSuccessfully built \1\n/);
  assert.doesNotMatch(again.stdout, /Running in/);
  assert.match(again.stdout, new RegExp(`Successfully built ${id.slice(0, 12)}\n`));

  const q = await docker(env, ['build', '-q', ctx]);
  assert.equal(q.code, 0, q.stderr);
  assert.equal(q.stdout, `sha256:${id}\n`);
});

test('images, tag, history, inspect, rmi, save and load', { skip }, async () => {
  const ctx = await makeContext({ Dockerfile: SEED });
  assert.equal((await docker(env, ['build', '-q', '-t', 'scooby_snacks', ctx])).code, 0);
  const id = (await repositories())['scooby_snacks']!['latest']!;
  const id12 = id.slice(0, 12);
  const tag = await docker(env, ['tag', 'scooby_snacks', 'thoward/scooby_snacks']);
  assert.deepEqual([tag.code, tag.stdout], [0, ''], tag.stderr);

  const images = await docker(env, ['images']);
  assert.equal(images.code, 0, images.stderr);
  const lines = images.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
  const rows = lines.slice(1).map((l) => l.split(/\s{2,}/));
  assert.deepEqual(rows.filter((r) => r[2] === id12).map((r) => `${r[0]}:${r[1]}`).sort(), ['scooby_snacks:latest', 'thoward/scooby_snacks:latest']);
  assert.ok(rows.some((r) => r[0] === 'busybox' && r[1] === 'latest'));
  const filtered = await docker(env, ['images', 'scooby_snacks']);
  assert.deepEqual(filtered.stdout.trimEnd().split('\n').slice(1).map((l) => l.split(/\s{2,}/)[0]), ['scooby_snacks']);

  const hist = await docker(env, ['history', 'thoward/scooby_snacks']);
  assert.equal(hist.code, 0, hist.stderr);
  assert.match(hist.stdout, /^IMAGE\s+CREATED\s+CREATED BY\s+SIZE\s+COMMENT\n/);
  assert.match(hist.stdout, new RegExp(`^${id12}\\s+.*ago\\s+/bin/sh -c touch scooby_snacks.txt\\s+0B`, 'm'));
  assert.match(hist.stdout, /Imported from -/);

  const insp = await docker(env, ['image', 'inspect', 'scooby_snacks']);
  assert.equal(insp.code, 0, insp.stderr);
  const doc = JSON.parse(insp.stdout)[0];
  assert.equal(doc.Id, `sha256:${id}`);
  assert.deepEqual(doc.RepoTags, ['scooby_snacks:latest', 'thoward/scooby_snacks:latest']);
  assert.equal(doc.RootFS.Layers.length, 2);
  assert.deepEqual(doc.Config.Cmd, ['sh']);
  assert.equal((await docker(env, ['inspect', '--format', '{{.Id}}', 'thoward/scooby_snacks'])).stdout, `sha256:${id}\n`);
  const none = await docker(env, ['inspect', 'no_such_thing']);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /Error: No such object: no_such_thing/);

  const saved = path.join(await tempDir('sw-save-'), 'f.tar');
  const save = await docker(env, ['save', '-o', saved, 'scooby_snacks']);
  assert.equal(save.code, 0, save.stderr);
  assert.ok((await fs.stat(saved)).size > 1024 * 1024);

  const rmi1 = await docker(env, ['rmi', 'scooby_snacks']);
  assert.deepEqual([rmi1.code, rmi1.stdout], [0, 'Untagged: scooby_snacks:latest\n'], rmi1.stderr);
  const rmi2 = await docker(env, ['rmi', 'thoward/scooby_snacks']);
  assert.deepEqual([rmi2.code, rmi2.stdout], [0, `Untagged: thoward/scooby_snacks:latest\nDeleted: sha256:${id}\n`], rmi2.stderr);
  assert.doesNotMatch((await docker(env, ['images'])).stdout, /scooby/);
  const gone = await docker(env, ['rmi', 'scooby_snacks']);
  assert.equal(gone.code, 1);
  assert.match(gone.stderr, /Error response from daemon: No such image: scooby_snacks/);

  const load = await docker(env, ['load', '-i', saved]);
  assert.deepEqual([load.code, load.stdout], [0, 'Loaded image: scooby_snacks:latest\n'], load.stderr);
  assert.match((await docker(env, ['images'])).stdout, /^scooby_snacks\s+latest\s/m);
  // An id with several tags is a 409 the CLI reports as Docker's conflict.
  assert.equal((await docker(env, ['tag', 'scooby_snacks', 'scooby_snacks:again'])).code, 0);
  const loaded = (await repositories())['scooby_snacks']!['latest']!;
  const conflict = await docker(env, ['rmi', loaded.slice(0, 12)]);
  assert.equal(conflict.code, 1);
  assert.match(conflict.stderr, /conflict: unable to delete [0-9a-f]{12} \(must be forced\) - image is referenced in multiple repositories/);
});

test('--build-arg, --target, -f, .dockerignore and --label behave as with dockerd', { skip }, async () => {
  const ctx = await makeContext({
    'kept.txt': 'kept\n',
    'ignored.txt': 'ignored\n',
    'debug.log': 'log\n',
    '.dockerignore': 'ignored.txt\n*.log\n',
    'sub/Build.dockerfile': [
      'FROM busybox AS one', 'ARG GREETING=hello', 'RUN echo "$GREETING" > /greeting.txt',
      'FROM one AS two', 'COPY . /ctx/', 'RUN ls -A /ctx | sort && cat /greeting.txt',
      'FROM two AS three', 'RUN echo three > /three', '',
    ].join('\n'),
  });
  const b = await docker(env, ['build', '-f', path.join(ctx, 'sub/Build.dockerfile'), '--build-arg', 'GREETING=bonjour', '--target', 'two',
    '--label', 'org.example.a=1', '--label', 'b=two words', '-t', 'multi', ctx]);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /Step 6\/8 : RUN ls -A \/ctx \| sort && cat \/greeting.txt\n ---> Running in [0-9a-f]{12}\n\.dockerignore\nkept\.txt\nsub\nbonjour\n/);
  // moby adds one LABEL step per label (sorted) to the stage that is built.
  assert.match(b.stdout, /Step 7\/8 : LABEL b='two words'\n[\s\S]*Step 8\/8 : LABEL org\.example\.a=1\n/);
  assert.doesNotMatch(b.stdout, /three/);
  const labels = await docker(env, ['image', 'inspect', '--format', '{{json .Config.Labels}}', 'multi']);
  assert.deepEqual(JSON.parse(labels.stdout), { b: 'two words', 'org.example.a': '1' });

  // A Dockerfile outside the context: the CLI adds it under a random name and .dockerignores it.
  const outside = path.join(await tempDir('sw-df-'), 'Dockerfile');
  await fs.writeFile(outside, 'FROM busybox\nCOPY . /ctx/\nRUN ls -A /ctx | sort\n');
  const o = await docker(env, ['build', '-f', outside, ctx]);
  assert.equal(o.code, 0, o.stderr);
  assert.match(o.stdout, / ---> Running in [0-9a-f]{12}\n\.dockerignore\nkept\.txt\nsub\nRemoving intermediate/);

  const t = await docker(env, ['build', '-f', path.join(ctx, 'sub/Build.dockerfile'), '--target', 'nope', ctx]);
  assert.equal(t.code, 1);
  assert.match(t.stderr, /Error response from daemon: failed to reach build target nope in Dockerfile/);
});

test('failing builds exit non-zero with Docker\'s message: RUN exits 3, unknown instruction', { skip }, async () => {
  const run3 = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo about to fail && exit 3\n' });
  const r = await docker(env, ['build', '-t', 'fails', run3]);
  assert.equal(r.code, 3, r.stderr);
  assert.match(r.stdout, /Step 2\/2 : RUN echo about to fail && exit 3\n ---> Running in [0-9a-f]{12}\nabout to fail\n$/);
  assert.match(r.stderr, /The command '\/bin\/sh -c echo about to fail && exit 3' returned a non-zero code: 3/);
  assert.equal((await repositories())['fails'], undefined);

  const unknown = await makeContext({ Dockerfile: 'FROM busybox\nFROBNICATE now\nRUN touch /never\n' });
  const u = await docker(env, ['build', unknown]);
  assert.equal(u.code, 1);
  assert.match(u.stderr, /Error response from daemon: dockerfile parse error line 2: unknown instruction: FROBNICATE/);
});

test('five builds at once all succeed; the same Dockerfile five times at once is one image', { skip }, async () => {
  const ctxs = await Promise.all([0, 1, 2, 3, 4].map((i) => makeContext({ Dockerfile: `FROM busybox\nRUN echo ctx${i} > /id.txt && cat /id.txt\n` })));
  const results = await Promise.all(ctxs.map((c, i) => docker(env, ['build', '-t', `para${i}`, c])));
  results.forEach((r, i) => {
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`\nctx${i}\n[\\s\\S]*Successfully tagged para${i}:latest\n$`));
  });
  const repos = await repositories();
  assert.equal(new Set([0, 1, 2, 3, 4].map((i) => repos[`para${i}`]!['latest'])).size, 5);

  // The RUN writes the time: only one execution can make five equal ids.
  const same = await makeContext({ Dockerfile: 'FROM busybox\nRUN date +%s%N > /when\n' });
  const quiet = await Promise.all([0, 1, 2, 3, 4].map(() => docker(env, ['build', '-q', same])));
  for (const q of quiet) assert.equal(q.code, 0, q.stderr);
  const ids = new Set(quiet.map((q) => q.stdout));
  assert.equal(ids.size, 1, [...ids].join(''));
  assert.match([...ids][0]!, /^sha256:[0-9a-f]{64}\n$/);
});

test('a client that disconnects cancels its build: the RUN is killed, nothing is committed', { skip }, async () => {
  const marker = `sleep ${4000 + crypto.randomInt(999)}`;
  const ctx = await makeContext({ Dockerfile: `FROM busybox\nRUN ${marker} && touch /never\n` });
  const before = await graphIds();
  const child = dockerChild(env, ['build', '-t', 'cancelled', ctx]);
  assert.ok(await waitFor(() => child.output().includes('Running in'), 20_000), child.output());
  assert.ok(await waitFor(async () => (await processesMentioning(marker)).length > 0, 10_000), 'the RUN is running');
  child.proc.kill('SIGKILL');
  assert.ok(await waitFor(async () => (await processesMentioning(marker)).length === 0, 10_000), (await processesMentioning(marker)).join('\n'));
  assert.deepEqual(await graphIds(), before);
  assert.equal((await repositories())['cancelled'], undefined);
  assert.equal((await docker(env, ['version'])).code, 0);
});

test('TCP: refused without a token; 401 without the header; the CLI works with HttpHeaders', { skip }, async () => {
  const noToken = await serveFails(root, ['-H', 'tcp://127.0.0.1:0']);
  assert.notEqual(noToken.code, 0);
  assert.match(noToken.stderr, /a TCP listener needs a token/);

  const token = crypto.randomBytes(24).toString('hex');
  const tokenFile = path.join(await tempDir('sw-tok-'), 'token');
  await fs.writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
  const tcp = await startServer(root, ['-H', 'tcp://127.0.0.1:0', '--token-file', tokenFile]);
  try {
    const port = Number(/:(\d+)$/.exec(tcp.host)![1]);
    const denied = await docker(await dockerEnv(tcp.host), ['images']);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /Unauthorized/);
    const raw = await rawHttp({ port }, 'GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    assert.equal(raw.status, 401);
    assert.match(JSON.parse(raw.body).message, /Authorization: Bearer/);
    const wrong = await rawHttp({ port }, `GET /_ping HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}x\r\nConnection: close\r\n\r\n`);
    assert.equal(wrong.status, 401);

    const authed = await dockerEnv(tcp.host, { HttpHeaders: { Authorization: `Bearer ${token}` } });
    const images = await docker(authed, ['images']);
    assert.equal(images.code, 0, images.stderr);
    assert.match(images.stdout, /^busybox\s+latest\s/m);
    const q = await docker(authed, ['build', '-q', await makeContext({ Dockerfile: SEED })]);
    assert.equal(q.code, 0, q.stderr);
    assert.match(q.stdout, /^sha256:[0-9a-f]{64}\n$/);
  } finally {
    await tcp.stop();
  }
});

test('malformed, oversized and abandoned requests get Docker-shaped errors; the server keeps serving', { skip }, async () => {
  const socket = server!.socket!;
  const http = (req: string | Buffer) => rawHttp({ socket }, req);
  const message = (body: string) => (JSON.parse(body) as { message: string }).message;

  const ping = await http('HEAD /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.equal(ping.status, 200);
  for (const h of [/^Api-Version: 1\.50$/m, /^Ostype: linux$/m, /^Builder-Version: 1$/m, /^Swarm: inactive$/m]) assert.match(ping.headers, h);

  const big = await http(`GET /_ping HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`);
  assert.equal(big.status, 431);
  assert.match(message(big.body), /headers exceed/);
  const garbage = await http('GARBAGE\r\n\r\n');
  assert.equal(garbage.status, 400);
  assert.match(message(garbage.body), /malformed request/);
  const tooNew = await http('GET /v1.99/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.deepEqual([tooNew.status, message(tooNew.body)], [400, 'client version 1.99 is too new. Maximum supported API version is 1.50']);
  const badArgs = await http('POST /v1.50/build?buildargs=%7Bbad HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  assert.deepEqual([badArgs.status, message(badArgs.body)], [400, 'invalid JSON in parameter buildargs']);
  const body = Buffer.alloc(100_000, 'x');
  const tooLarge = await http(Buffer.concat([Buffer.from(`POST /images/busybox/tag?repo=x HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n`), body]));
  assert.equal(tooLarge.status, 413);
  const junk = crypto.randomBytes(3000);
  for (const p of ['/build', '/images/load']) {
    const r = await http(Buffer.concat([Buffer.from(`POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Length: ${junk.length}\r\nConnection: close\r\n\r\n`), junk]));
    assert.equal(r.status, 400, r.body);
    assert.match(message(r.body), /invalid (tar )?archive/);
  }
  const container = await http('GET /v1.50/containers/x/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.deepEqual([container.status, message(container.body)], [404, 'No such container: x']);
  const unknownImage = await http('GET /v1.50/images/localhost:5000/no/such:1/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.deepEqual([unknownImage.status, message(unknownImage.body)], [404, 'No such image: localhost:5000/no/such:1']);

  // A reader that goes away in the middle of `docker save` must not take the server down.
  await new Promise<void>((resolve) => {
    const c = net.connect(socket);
    c.on('data', () => c.destroy());
    c.on('close', () => resolve());
    c.on('error', () => undefined);
    c.end('GET /images/get?names=busybox HTTP/1.1\r\nHost: x\r\n\r\n');
  });
  const v = await docker(env, ['version']);
  assert.equal(v.code, 0, `${v.stderr}\n${server!.output()}`);
  assert.equal(server!.proc.exitCode, null);
});
