/**
 * RUN --mount=type=secret through the CLI: a 0400 read-only file at /run/secrets/<id> (or
 * where asked, with the asked owner and mode), an environment variable with env=, required or
 * optional; and the value is found nowhere afterwards: not in a layer, the history, the image
 * config, the cache key's preimage, the build output, the stats, or anywhere in the store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { slipway, storeWithBusybox, makeContext, snapshotTree } from '../support/cli.js';
import { filesHolding, tarMembersHolding } from '../support/secret-search.js';

const VALUE = `tok-${crypto.randomBytes(12).toString('hex')}`;
const sha = (s: string) => crypto.createHash('sha256').update(s).digest('hex');

async function secretFile(): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-secret-'));
  await fs.writeFile(path.join(dir, 'tok'), `${VALUE}\n`);
  return path.join(dir, 'tok');
}

test('a secret is a 0400 read-only file at /run/secrets/<id>, or an env variable, and leaks nowhere', async () => {
  const root = await storeWithBusybox();
  const src = await secretFile();
  const ctx = await makeContext({ Dockerfile: [
    'FROM busybox',
    'RUN --mount=type=secret,id=tok sh -c \'stat -c "%a %u %g %s" /run/secrets/tok; sha256sum /run/secrets/tok; msg=$( (echo x > /run/secrets/tok) 2>&1 ) || echo "refused: $msg"\'',
    'RUN --mount=type=secret,id=tok,target=/etc/app/key,uid=1000,gid=1000,mode=0440 stat -c "%a %u %g" /etc/app/key',
    'RUN --mount=type=secret,id=tok,env=TOKEN sh -c \'echo "$TOKEN" | sha256sum; test -s /run/secrets/tok || echo no-file\'',
    'RUN --mount=type=secret,id=absent sh -c \'test -e /run/secrets/absent || echo optional-absent\'',
    'ENV AFTER=1',
  ].join('\n') + '\n' });
  const r = await slipway(root, ['build', '-t', 'sec:1', '--secret', `id=tok,src=${src}`, ctx]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^400 0 0 \d+$/m, 'mode 0400, root');
  assert.ok(r.stdout.includes(`${sha(`${VALUE}\n`)}  /run/secrets/tok`), 'the content is the secret');
  // The shell's message comes back through the same pipe as the echo: stdout and stderr are two
  // pipes, whose relative order is lost whenever both hold data (busybox writes "sh: " apart).
  assert.match(r.stdout, /^refused: .*Read-only file system$/m, 'the secret cannot be written');
  assert.match(r.stdout, /^440 1000 1000$/m);
  assert.ok(r.stdout.includes(sha(`${VALUE}\n`)), 'env=: the variable holds the value');
  assert.match(r.stdout, /^no-file$/m, 'env= alone mounts no file');
  assert.match(r.stdout, /^optional-absent$/m);
  const needle = Buffer.from(VALUE);
  assert.ok(!(r.stdout + r.stderr).includes(VALUE), 'not in the build output');
  // Where it must not be: the saved image (layers, config, manifest), history, inspect, stats, the whole store.
  const out = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-save-')), 'img.tar');
  assert.equal((await slipway(root, ['save', '-o', out, 'sec:1'])).code, 0);
  assert.deepEqual(await tarMembersHolding(await fs.readFile(out), needle), []);
  for (const args of [['history', '--no-trunc', 'sec:1'], ['inspect', 'sec:1'], ['stats', '--format', 'json'], ['images', '-a']]) {
    const x = await slipway(root, args);
    assert.equal(x.code, 0, x.stderr);
    assert.ok(!(x.stdout + x.stderr).includes(VALUE), `not in ${args.join(' ')}`);
  }
  assert.deepEqual(await filesHolding(root, needle), [], 'nowhere in the store (cache key preimages, history, build records, layers)');
  assert.deepEqual(await filesHolding('/dev/shm', needle), [], 'the step\'s secret folder is gone');
  // The layer keeps the mount point (an empty file), as BuildKit's does.
  const inspect = JSON.parse((await slipway(root, ['inspect', 'sec:1'])).stdout) as Array<{ Config: { Env: string[] } }>;
  assert.ok(!inspect[0]!.Config.Env.some((e) => e.startsWith('TOKEN=')), 'env= never enters the image config');
  // A changed secret is not a cache miss (its value is not in the key), as in BuildKit.
  await fs.writeFile(src, 'another value\n');
  const again = await slipway(root, ['build', '-t', 'sec:1', '--secret', `id=tok,src=${src}`, ctx]);
  assert.equal((again.stdout.match(/Using cache/g) ?? []).length, 5, again.stdout);
});

test('secret errors: required and not given, a missing file, an unknown option (store unchanged)', async () => {
  const root = await storeWithBusybox();
  const req = await makeContext({ Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=must,required=true true\n' });
  const r = await slipway(root, ['build', req]);
  assert.notEqual(r.code, 0);
  assert.equal(r.stderr.trim(), 'Error: Dockerfile:2: RUN --mount=type=secret: secret must not found (give it with --secret id=must,src=FILE)');
  const missing = await slipway(root, ['build', '--secret', 'id=x,src=/nonexistent/file', req]);
  assert.equal(missing.stderr.trim(), 'Error: open /nonexistent/file: no such file or directory');
  const before = await snapshotTree(root);
  const bad = await makeContext({ Dockerfile: 'FROM busybox\nRUN true\nRUN --mount=type=secret,id=a,frob=1 true\n' });
  const b = await slipway(root, ['build', bad]);
  assert.equal(b.stderr.trim(), 'Error: Dockerfile:3: RUN --mount: type=secret does not take the option "frob"');
  assert.deepEqual(await snapshotTree(root), before, 'a bad Dockerfile leaves the store as it was');
  process.env['SLIPWAY_TEST_SECRET'] = VALUE;
  const env = await makeContext({ Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=e,required sh -c \'sha256sum /run/secrets/e\'\n' });
  const e = await slipway(root, ['build', '--secret', 'id=e,env=SLIPWAY_TEST_SECRET', env], { env: { ...process.env, SLIPWAY_TEST_SECRET: VALUE } });
  assert.equal(e.code, 0, e.stderr);
  assert.ok(e.stdout.includes(sha(VALUE)), '--secret id=…,env=VAR reads the variable');
});
