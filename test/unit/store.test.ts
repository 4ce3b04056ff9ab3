import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { StoreLayout, type ImageId } from '../../src/store/layout.js';
import { ensureStore, imageChain, makeTmpDir, readImage, registerImage, resolveImage, hasImage, sweepTmp, listImageIds } from '../../src/store/graph.js';
import { readRepositories, updateRepositories } from '../../src/store/repositories.js';
import { removeImage } from '../../src/store/remove.js';
import { parseReference } from '../../src/store/reference.js';
import { emptyContainerConfig } from '../../src/image-config.js';
import { SlipwayError } from '../../src/errors.js';

async function freshStore(): Promise<StoreLayout> {
  const layout = new StoreLayout(await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-store-')));
  await ensureStore(layout);
  return layout;
}

async function addImage(layout: StoreLayout, id: string, parent?: string): Promise<ImageId> {
  const dir = path.join(await makeTmpDir(layout, 't'), 'layer');
  await fs.mkdir(dir);
  await registerImage(layout, {
    id: id as ImageId, layerDir: dir, diffId: 'sha256:x', layerSize: 0,
    json: { id, ...(parent ? { parent } : {}), created: new Date().toISOString(), container_config: emptyContainerConfig(), docker_version: 'x', config: emptyContainerConfig(), architecture: 'amd64', os: 'linux', Size: 0 },
  });
  await fs.rm(path.dirname(dir), { recursive: true, force: true });
  return id as ImageId;
}

const hex = (c: string) => c.repeat(64).slice(0, 64);

async function tag(layout: StoreLayout, ref: string, id: string): Promise<void> {
  const r = parseReference(ref);
  await updateRepositories(layout, (repos) => { (repos.Repositories[r.repository] ??= {})[r.tag] = id; });
}

test('references parse as Docker does', () => {
  assert.deepEqual(parseReference('busybox'), { repository: 'busybox', tag: 'latest' });
  assert.deepEqual(parseReference('thoward/scooby_snacks:v1'), { repository: 'thoward/scooby_snacks', tag: 'v1' });
  assert.deepEqual(parseReference('localhost:5000/a/b'), { repository: 'localhost:5000/a/b', tag: 'latest' });
  assert.deepEqual(parseReference('127.0.0.1:5000/x:1.0'), { repository: '127.0.0.1:5000/x', tag: '1.0' });
  for (const bad of ['UPPER', 'a//b', 'a:', ':t', 'a b', '-a', 'a:-t']) assert.throws(() => parseReference(bad), SlipwayError, bad);
});

test('tag, resolve by name, full id and unique prefix; an ambiguous prefix is an error', async () => {
  const layout = await freshStore();
  const a = await addImage(layout, `abc1${hex('0').slice(4)}`);
  const b = await addImage(layout, `abc2${hex('0').slice(4)}`);
  await tag(layout, 'app:1', a);
  assert.equal(await resolveImage(layout, 'app:1'), a);
  assert.equal(await resolveImage(layout, a), a);
  assert.equal(await resolveImage(layout, `sha256:${b}`), b);
  assert.equal(await resolveImage(layout, 'abc2'), b);
  await assert.rejects(resolveImage(layout, 'abc'), (e: unknown) => e instanceof SlipwayError && e.code === 'ERR_AMBIGUOUS_REFERENCE');
  await assert.rejects(resolveImage(layout, 'nope:1'), (e: unknown) => e instanceof SlipwayError && e.code === 'ERR_IMAGE_NOT_FOUND');
  const repos = JSON.parse(await fs.readFile(layout.repositories, 'utf8'));
  assert.deepEqual(repos, { Repositories: { app: { '1': a } } });
});

test('rmi: untag first, delete when unreferenced, parents that nothing needs go too', async () => {
  const layout = await freshStore();
  const base = await addImage(layout, hex('1'));
  const mid = await addImage(layout, hex('2'), base);
  const top = await addImage(layout, hex('3'), mid);
  await tag(layout, 'base:latest', base);
  await tag(layout, 'scooby_snacks:latest', top);
  await tag(layout, 'thoward/scooby_snacks:latest', top);
  assert.deepEqual(await removeImage(layout, 'scooby_snacks'), [{ Untagged: 'scooby_snacks:latest' }]);
  assert.ok(await hasImage(layout, top));
  assert.deepEqual(await removeImage(layout, 'thoward/scooby_snacks'), [
    { Untagged: 'thoward/scooby_snacks:latest' }, { Deleted: `sha256:${top}` }, { Deleted: `sha256:${mid}` },
  ]);
  assert.ok(!(await hasImage(layout, top)));
  assert.ok(!(await hasImage(layout, mid)));
  assert.ok(await hasImage(layout, base), 'a tagged parent stays');
});

test('rmi: an image with children is never deleted; several tags need force', async () => {
  const layout = await freshStore();
  const base = await addImage(layout, hex('4'));
  await addImage(layout, hex('5'), base);
  await assert.rejects(removeImage(layout, base), /image has dependent child images/);
  await assert.rejects(removeImage(layout, base, true), /cannot be forced/);
  await tag(layout, 'base:latest', base);
  assert.deepEqual(await removeImage(layout, 'base:latest'), [{ Untagged: 'base:latest' }]);
  assert.ok(await hasImage(layout, base), 'untagged, but a child still needs it');
  const lone = await addImage(layout, hex('6'));
  await tag(layout, 'x:1', lone);
  await tag(layout, 'y:1', lone);
  await assert.rejects(removeImage(layout, lone), /must be forced/);
  const ev = await removeImage(layout, lone, true);
  assert.deepEqual(ev, [{ Untagged: 'x:1' }, { Untagged: 'y:1' }, { Deleted: `sha256:${lone}` }]);
});

test('concurrent tagging from several processes loses no tag', async () => {
  const layout = await freshStore();
  const id = await addImage(layout, hex('7'));
  const script = `
    const { StoreLayout } = await import(${JSON.stringify(new URL('../../src/store/layout.js', import.meta.url).href)});
    const { updateRepositories } = await import(${JSON.stringify(new URL('../../src/store/repositories.js', import.meta.url).href)});
    const layout = new StoreLayout(process.argv[1]);
    for (let i = 0; i < 20; i++) await updateRepositories(layout, (r) => { (r.Repositories['p' + process.argv[2]] ??= {})['t' + i] = process.argv[3]; });`;
  await Promise.all([0, 1, 2, 3].map((n) => new Promise<void>((resolve, reject) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', script, layout.root, String(n), id], { stdio: 'inherit' });
    c.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`exit ${code}`))));
  })));
  const repos = await readRepositories(layout);
  for (const n of [0, 1, 2, 3]) assert.equal(Object.keys(repos.Repositories[`p${n}`] ?? {}).length, 20);
});

test('kill -9 while registering images leaves no partial image and a readable repositories file', async () => {
  const layout = await freshStore();
  const child = spawn(process.execPath, [fileURLToPath(new URL('../support/register-loop.js', import.meta.url)), layout.root], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  // Killed at a random moment once it has registered something (a loaded machine is slow to start).
  for (let i = 0; i < 300 && (await listImageIds(layout)).length === 0; i++) await new Promise((r) => setTimeout(r, 100));
  await new Promise((r) => setTimeout(r, crypto.randomInt(400)));
  child.kill('SIGKILL');
  await new Promise((r) => child.once('exit', r));
  const ids = await listImageIds(layout);
  assert.ok(ids.length > 0, 'the loop registered something before it was killed');
  for (const id of ids) {
    for (const f of ['json', 'layersize', 'diffid', 'layer']) {
      await fs.access(path.join(layout.imageDir(id), f));
    }
    assert.equal((await fs.readdir(layout.layerDir(id))).length, 200, `layer of ${id} is complete`);
  }
  const repos = await readRepositories(layout);
  for (const id of Object.values(repos.Repositories['loop'] ?? {})) assert.ok(ids.includes(id as ImageId), 'every tag names a complete image');
  // What the dead process left in graph/_tmp is swept by the next user of the store.
  await sweepTmp(layout);
  assert.deepEqual(await fs.readdir(layout.tmp), []);
  await fs.rm(layout.root, { recursive: true, force: true });
});

test('image JSON is read once and then kept, frozen; an image removed behind the memo\'s back is gone for readImage and imageChain', async () => {
  const layout = await freshStore();
  const base = await addImage(layout, 'a'.repeat(64));
  const top = await addImage(layout, 'b'.repeat(64), base);
  const first = await readImage(layout, top);
  assert.equal(await readImage(layout, top), first, 'the same object: read once');
  assert.ok(Object.isFrozen(first) && Object.isFrozen(first.config), 'frozen, so no caller changes what the next reads');
  assert.throws(() => { (first as { parent?: string }).parent = 'x'; }, TypeError);
  assert.deepEqual((await imageChain(layout, top)).map((c) => c.id), [top, base]);
  // Removed by another process (rmi, prune): the memo does not bring it back.
  await fs.rm(layout.imageDir(top), { recursive: true });
  await assert.rejects(readImage(layout, top), { code: 'ERR_IMAGE_NOT_FOUND' });
  await assert.rejects(imageChain(layout, top), { code: 'ERR_IMAGE_NOT_FOUND' });
  assert.equal((await readImage(layout, base)).id, base);
  await fs.rm(layout.root, { recursive: true, force: true });
});

test('graph/_tmp, where new layers are made, gets the Orlov top-directory flag on ext2/3/4 (chattr +T)', async (t) => {
  const parent = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-store-'));
  if ((await fs.statfs(parent)).type !== 0xef53) {
    t.skip('the temp dir is not on ext2/3/4, which alone has this flag');
    return;
  }
  const layout = new StoreLayout(parent);
  await ensureStore(layout);
  const { execFileSync } = await import('node:child_process');
  const flags = (d: string) => execFileSync('lsattr', ['-d', d], { encoding: 'utf8' }).split(' ')[0]!;
  assert.match(flags(layout.tmp), /T/, 'graph/_tmp spreads the scratch folders made in it');
  // Only graph/_tmp: the graph and a scratch folder keep ext4's default placement.
  assert.doesNotMatch(flags(layout.graph), /T/);
  assert.doesNotMatch(flags(await makeTmpDir(layout, 't')), /T/);
});
