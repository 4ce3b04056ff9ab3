/**
 * What a `slipway build` process does before its first step: the parsed Dockerfile kept in the
 * store, the compile cache, and finding (or not) a resident engine.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import module from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { makeContext, slipway, storeWithBusybox } from '../support/cli.js';

let root: string;
const inProcess = { SLIPWAY_ENGINE: 'off' };

before(async () => {
  root = await storeWithBusybox();
});

after(async () => {
  await fs.rm(root, { recursive: true, force: true });
});

const parsedEntries = () => fs.readdir(path.join(root, 'parsed')).catch(() => [] as string[]);

test('a built Dockerfile\'s parse is kept, and the next build of it gives the same image from the cache', async () => {
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nENV K=v\nRUN echo kept > /k\nCMD ["cat", "/k"]\n' });
  const before = await parsedEntries();
  const first = await slipway(root, ['build', '-q', ctx], { env: inProcess });
  assert.equal(first.code, 0, first.stderr);
  const after = await parsedEntries();
  assert.equal(after.length, before.length + 1, 'one entry for the new Dockerfile');
  const second = await slipway(root, ['build', ctx], { env: inProcess });
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /Step 3\/4 : RUN echo kept > \/k\n ---> Using cache\n/);
  assert.ok(second.stdout.includes(`Successfully built ${first.stdout.trim().slice('sha256:'.length, 'sha256:'.length + 12)}`), second.stdout);
  assert.deepEqual(await parsedEntries(), after, 'nothing new for a Dockerfile seen before');
});

test('a Dockerfile that parses but cannot be built keeps nothing; a bad one fails as before', async () => {
  const ctx = await makeContext({ Dockerfile: 'FROM busybox AS a\nRUN true\n' });
  const before = await parsedEntries();
  const r = await slipway(root, ['build', '--target', 'nosuch', ctx], { env: inProcess });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /nosuch/);
  const bad = await makeContext({ Dockerfile: 'FROM busybox\nFROBNICATE now\n' });
  for (let i = 0; i < 2; i++) {
    const b = await slipway(root, ['build', bad], { env: inProcess });
    assert.notEqual(b.code, 0);
    assert.match(b.stderr, /Dockerfile:2: unknown instruction: FROBNICATE/);
    assert.doesNotMatch(b.stderr, /\n\s+at /, 'one line, no stack');
  }
  assert.deepEqual(await parsedEntries(), before);
});

test('the compile cache: on where this Node has one, in SLIPWAY_COMPILE_CACHE; off (and no folder) with =off or without one', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-ccache-'));
  try {
    const on = path.join(dir, 'on');
    const r = await slipway(root, ['--help'], { env: { SLIPWAY_COMPILE_CACHE: on } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Usage:\s+slipway/);
    const hasCache = typeof (module as unknown as { enableCompileCache?: unknown }).enableCompileCache === 'function';
    const files = await fs.readdir(on, { recursive: true }).catch(() => undefined);
    if (hasCache) assert.ok(files && files.length > 0, 'modules compiled into the cache');
    else assert.equal(files, undefined, `Node ${process.version} has no compile cache: nothing is made`);
    const off = path.join(dir, 'off');
    const r2 = await slipway(root, ['--help'], { env: { SLIPWAY_COMPILE_CACHE: 'off', NODE_COMPILE_CACHE: '' } });
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(await fs.stat(off).catch(() => undefined), undefined);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('a slipway.sock that is no socket (left by something else) is no engine: the build runs in-process', async () => {
  const other = await storeWithBusybox();
  try {
    await fs.writeFile(path.join(other, 'slipway.sock'), 'not a socket');
    const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo here > /h\n' });
    const r = await slipway(other, ['build', ctx]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Successfully built [0-9a-f]{12}\n/);
  } finally {
    await fs.rm(other, { recursive: true, force: true });
  }
});
