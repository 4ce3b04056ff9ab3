/**
 * `load` reads members only from inside the archive: a `manifest.json` (or OCI index, or
 * legacy layout) naming a file by `..`, an absolute path or a link out is refused with one
 * line, and nothing is loaded, through the CLI and through `POST /images/load`.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { slipway, snapshotTree, storeWithBusybox } from '../support/cli.js';
import { cleanup, request, startServer, tempDir } from '../support/engine-api.js';
import { hostileArchives, linkedLayerArchive, plantSecret } from '../support/hostile-archives.js';
import { makeTar } from '../support/tar.js';

after(cleanup);

const NO_STACK = /^\s+at |node:internal|Error: Error:/m;

test('slipway load refuses every archive that names a file outside it, loads nothing, prints one line', async () => {
  const root = await storeWithBusybox();
  const secret = await plantSecret(root);
  const dir = await tempDir('sw-hostile-');
  const before = await snapshotTree(root);
  for (const [what, tar] of await hostileArchives(secret)) {
    const file = path.join(dir, 'a.tar');
    await fs.writeFile(file, tar);
    const r = await slipway(root, ['load', '-i', file]);
    assert.notEqual(r.code, 0, `${what}: loaded:\n${r.stdout}`);
    assert.equal(r.stdout, '', what);
    assert.doesNotMatch(r.stderr, NO_STACK, what);
    assert.equal(r.stderr.split('\n').length, 2, `${what}: one line: ${r.stderr}`);
    assert.match(r.stderr, /^Error: invalid (archive|OCI layout)/, what);
    assert.deepEqual(await snapshotTree(root), before, `${what}: the store is unchanged`);
  }
});

test('the messages say which name is not in the archive, Docker-style; an archive with no image is an error', async () => {
  const root = await storeWithBusybox();
  const secret = await plantSecret(root);
  const all = await hostileArchives(secret);
  const [dotdot, config, abs] = [all[0]![1], all[1]![1], all[3]![1]];
  const dir = await tempDir('sw-hostile-');
  const cases: Array<[Buffer, string]> = [
    [dotdot, `Error: invalid archive: layer "../../../../secret/layer.tar" is not in the archive\n`],
    [config, `Error: invalid archive: config "../../../../secret/config.json" is not in the archive\n`],
    [abs, `Error: invalid archive: layer ${JSON.stringify(`${secret.abs}/layer.tar`)} is not in the archive\n`],
  ];
  cases.push([await makeTar([{ name: 'manifest.json', body: '[]' }]), 'Error: invalid archive: it holds no image (its manifest.json or index.json lists none)\n']);
  for (const [tar, want] of cases) {
    await fs.writeFile(path.join(dir, 'a.tar'), tar);
    assert.equal((await slipway(root, ['load', '-i', path.join(dir, 'a.tar')])).stderr, want);
  }
});

test('a layer reached through a symlink inside the archive still loads (older docker save shares layers so)', async () => {
  const root = await storeWithBusybox();
  const file = path.join(await tempDir('sw-linked-'), 'a.tar');
  await fs.writeFile(file, await linkedLayerArchive());
  const r = await slipway(root, ['load', '-i', file]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, 'Loaded image: linked:latest\n');
  const id = JSON.parse(await fs.readFile(path.join(root, 'repositories'), 'utf8')).Repositories.linked.latest as string;
  assert.equal(await fs.readFile(path.join(root, 'graph', id, 'layer', 'secret.txt'), 'utf8'), 'not secret\n');
});

test('a compressed archive (docker save | gzip, | xz) loads, as docker load reads it', async () => {
  const dir = await tempDir('sw-gz-');
  const { execFileSync } = await import('node:child_process');
  await fs.writeFile(path.join(dir, 'a.tar'), await linkedLayerArchive());
  for (const [tool, ext] of [['gzip', 'gz'], ['xz', 'xz']] as const) {
    execFileSync('sh', ['-c', `${tool} -c a.tar > a.tar.${ext}`], { cwd: dir });
    const fresh = await tempDir('sw-gz-root-');
    const r = await slipway(fresh, ['load', '-i', path.join(dir, `a.tar.${ext}`)]);
    assert.equal(r.stdout, 'Loaded image: linked:latest\n', `${tool}: ${r.stderr}`);
  }
});

test('POST /images/load refuses the same archives with a 400 and loads nothing', async () => {
  const root = await storeWithBusybox();
  const secret = await plantSecret(root);
  const server = await startServer(root, ['-H', `unix://${path.join(await tempDir('sw-sock-'), 'd.sock')}`]);
  try {
    const before = await snapshotTree(root);
    for (const [what, tar] of await hostileArchives(secret)) {
      const r = await request(server.socket!, { method: 'POST', path: '/v1.41/images/load?quiet=1', headers: { 'Content-Type': 'application/x-tar', 'Content-Length': tar.length } }, tar);
      assert.equal(r.status, 400, `${what}: ${r.status} ${r.body}`);
      assert.match(JSON.parse(r.body).message, /^invalid (archive|OCI layout)/, what);
      assert.deepEqual(await snapshotTree(root), before, `${what}: the store is unchanged`);
    }
  } finally {
    await server.stop();
  }
});
