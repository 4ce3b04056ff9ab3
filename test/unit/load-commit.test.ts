import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { StoreLayout, type ImageId } from '../../src/store/layout.js';
import { ensureStore, listImageIds, makeTmpDir, registerImage } from '../../src/store/graph.js';
import { readRepositories } from '../../src/store/repositories.js';
import { parseReference } from '../../src/store/reference.js';
import { emptyContainerConfig } from '../../src/image-config.js';
import { SlipwayError } from '../../src/errors.js';
import { commitImages } from '../../src/registry/load.js';
import { checkConfigDoc, planChain, unpackKeepingTar } from '../../src/registry/chain.js';
import type { PreparedImage } from '../../src/registry/load-prepare.js';
import { restoreChain } from '../../src/registry/saved-chain.js';
import { secretLayer } from '../support/hostile-archives.js';

async function freshStore(): Promise<StoreLayout> {
  const layout = new StoreLayout(await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-commit-')));
  await ensureStore(layout);
  return layout;
}

/** An image of one layer holding `text`, unpacked and ready to register. */
async function prepared(layout: StoreLayout, text: string, tag: string, unpack = true): Promise<PreparedImage> {
  const { layer, config } = await secretLayer(text);
  const doc = checkConfigDoc(JSON.parse(config.toString()));
  const layers = new Map();
  if (unpack) {
    const dir = await makeTmpDir(layout, 'test');
    await fs.mkdir(path.join(dir, 'layer'));
    const { diffId, tarFile } = await unpackKeepingTar(Readable.from([layer]), path.join(dir, 'layer'), dir);
    layers.set(0, { layerDir: path.join(dir, 'layer'), diffId, tarFile });
  }
  return { doc, plan: planChain(doc), configBytes: config, layers, tags: [parseReference(tag)] };
}

test('commitImages adds all or nothing: a failure on the second image takes the first away and tags nothing', async () => {
  const layout = await freshStore();
  const first = await prepared(layout, 'one\n', 'one:1');
  const second = await prepared(layout, 'two\n', 'two:1', false);
  await assert.rejects(commitImages(layout, [first, second]), (e: unknown) => e instanceof SlipwayError && /was not prepared/.test(e.message));
  assert.deepEqual(await listImageIds(layout), []);
  assert.deepEqual((await readRepositories(layout)).Repositories, {});
  const ok = await commitImages(layout, [await prepared(layout, 'one\n', 'one:1')]);
  assert.deepEqual(await listImageIds(layout), [ok[0]!.id]);
});

test('a saved chain must match the config: count, empty layers, parents, ids, the top config', async () => {
  const layout = await freshStore();
  const { doc, plan } = await prepared(layout, 'x\n', 'x:1', false);
  const json = { id: 'a'.repeat(64), created: '2020-01-01T00:00:00Z', config: { ...emptyContainerConfig(), Cmd: ['sh'] }, container_config: emptyContainerConfig(), docker_version: '', architecture: 'amd64', os: 'linux', Size: 0 };
  assert.equal(restoreChain(plan, doc, [json])[0]!.id, 'a'.repeat(64));
  const bad: Array<[string, unknown]> = [
    ['not a list', { 0: json }],
    ['two entries for one', [json, { ...json, id: 'b'.repeat(64), parent: json.id }]],
    ['no id', [{ ...json, id: '../../etc' }]],
    ['a parent where none is', [{ ...json, parent: 'c'.repeat(64) }]],
    ['an empty layer where the history has one', [{ ...json, throwaway: true }]],
    ['another config', [{ ...json, config: { ...json.config, Cmd: ['evil'] } }]],
    ['a config Slipway would trip over', [{ ...json, config: { ...json.config, Env: 'PATH=/x' } }]],
  ];
  for (const [what, saved] of bad) assert.throws(() => restoreChain(plan, doc, saved), (e: unknown) => e instanceof SlipwayError && e.code === 'ERR_BAD_ARCHIVE', what);
});

test('registerImage refuses a second content under an existing id, and cleans up on failure', async () => {
  const layout = await freshStore();
  const add = async (diffId: string) => {
    const dir = path.join(await makeTmpDir(layout, 't'), 'layer');
    await fs.mkdir(dir);
    return registerImage(layout, { id: 'd'.repeat(64) as ImageId, layerDir: dir, diffId, layerSize: 0, json: { id: 'd'.repeat(64), created: '', container_config: emptyContainerConfig(), docker_version: '', config: emptyContainerConfig(), architecture: 'amd64', os: 'linux', Size: 0 } });
  };
  assert.equal(await add('sha256:1'), true);
  assert.equal(await add('sha256:1'), false);
  await assert.rejects(add('sha256:2'), (e: unknown) => e instanceof SlipwayError && e.code === 'ERR_IMAGE_CONFLICT');
  const dir = path.join(await makeTmpDir(layout, 't'), 'layer');
  await assert.rejects(registerImage(layout, { id: 'e'.repeat(64) as ImageId, layerDir: dir, diffId: 'sha256:1', layerSize: 0, json: {} as never }));
  const left = (await fs.readdir(layout.tmp)).filter((n) => n.includes('-img-'));
  assert.deepEqual(left, [], 'no staging folder is left behind');
});
