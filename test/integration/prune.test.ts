import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { slipway, storeWithBusybox, makeContext } from '../support/cli.js';

async function storeBytes(root: string): Promise<number> {
  let total = 0;
  for (const id of await fs.readdir(path.join(root, 'graph'))) {
    if (id === '_tmp') continue;
    total += Number(await fs.readFile(path.join(root, 'graph', id, 'layersize'), 'utf8'));
    total += (await fs.stat(path.join(root, 'graph', id, 'layer.tar')).catch(() => undefined))?.size ?? 0;
  }
  return total;
}

test('prune --keep-storage brings the store under the cap; tagged images still run', async () => {
  const root = await storeWithBusybox();
  // Cache-only images: three variants of a 300 kB layer that nothing tags any more.
  for (const v of [1, 2, 3]) {
    const ctx = await makeContext({ Dockerfile: `FROM busybox\nRUN dd if=/dev/zero of=/blob bs=1000 count=${300 + v} 2>/dev/null\nRUN echo ${v} > /v\n` });
    assert.equal((await slipway(root, ['build', ctx])).code, 0);
  }
  const keep = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo kept > /kept\n' });
  assert.equal((await slipway(root, ['build', '-t', 'keep:1', keep])).code, 0);
  const before = await storeBytes(root);
  const cap = before - 500_000;
  const dry = await slipway(root, ['prune', '--dry-run', '--keep-storage', String(cap)]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /^Would delete: sha256:[0-9a-f]{64}/m);
  assert.equal(await storeBytes(root), before, 'dry run removes nothing');
  const r = await slipway(root, ['prune', '--keep-storage', String(cap)]);
  assert.equal(r.code, 0, r.stderr);
  const after = await storeBytes(root);
  assert.ok(after <= cap, `store ${after} under the cap ${cap}`);
  assert.ok(after > cap - 400_000, 'it stopped near the cap rather than removing everything');
  assert.equal((await slipway(root, ['run', 'keep:1', 'cat', '/kept'])).stdout, 'kept\n');
  assert.equal((await slipway(root, ['run', 'busybox', 'true'])).code, 0);
  // Every remaining image's parent chain is complete.
  for (const id of await fs.readdir(path.join(root, 'graph'))) {
    if (id === '_tmp') continue;
    const json = JSON.parse(await fs.readFile(path.join(root, 'graph', id, 'json'), 'utf8'));
    if (json.parent) await fs.access(path.join(root, 'graph', json.parent, 'json'));
  }
  // Without a cap, everything unreferenced goes; the tagged chains stay.
  const all = await slipway(root, ['prune']);
  assert.equal(all.code, 0);
  const left = (await fs.readdir(path.join(root, 'graph'))).filter((n) => n !== '_tmp');
  assert.equal(left.length, 2, `busybox and keep:1 remain: ${left.join(' ')}`);
});

test('prune keeps what a running build stands on: a cached step it took is marked, and the build finishes on it', async () => {
  const root = await storeWithBusybox();
  const first = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo base > /base\n' });
  const built = await slipway(root, ['build', '-q', first]);
  assert.equal(built.code, 0, built.stderr);
  const base = built.stdout.trim().replace(/^sha256:/, '');
  const second = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo base > /base\nRUN sleep 3 && echo two > /two\n' });
  const running = slipway(root, ['build', '-t', 'two:1', second], { env: { SLIPWAY_ENGINE: 'off' } });
  // The running build's marker names the cached step's image (one empty file per image).
  const marked = async () => {
    for (const d of await fs.readdir(path.join(root, 'running')).catch(() => [] as string[])) {
      if ((await fs.readdir(path.join(root, 'running', d)).catch(() => [] as string[])).includes(base)) return true;
    }
    return false;
  };
  for (let i = 0; i < 100 && !(await marked()); i++) await new Promise((r) => setTimeout(r, 50));
  assert.ok(await marked(), 'the build marked the image it took from the cache');
  const pruned = await slipway(root, ['prune', '--keep-storage', '0']);
  assert.equal(pruned.code, 0, pruned.stderr);
  assert.ok(await fs.stat(path.join(root, 'graph', base, 'json')).catch(() => undefined), 'the image in use survived the prune');
  const r = await running;
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, / ---> Using cache\n/);
  assert.equal((await slipway(root, ['run', 'two:1', 'cat', '/base', '/two'])).stdout, 'base\ntwo\n');
  assert.deepEqual(await fs.readdir(path.join(root, 'running')), [], 'the marker went with the build');
  // Nothing stands on it any more: the same prune now removes it.
  await slipway(root, ['rmi', 'two:1']);
  assert.equal((await slipway(root, ['prune', '--keep-storage', '0'])).code, 0);
  assert.equal(await fs.stat(path.join(root, 'graph', base, 'json')).catch(() => undefined), undefined);
  await fs.rm(root, { recursive: true, force: true });
});
