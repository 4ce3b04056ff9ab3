/**
 * `save` -> `load` keeps every image id, as Docker's does (there the id is the config digest):
 * into the same store and into a fresh one, through the CLI and through the docker CLI on
 * `serve`, for a multi-stage build and for busybox whatever the archive holds it.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { makeContext, slipway, snapshotTree, storeWithBusybox } from '../support/cli.js';
import { cleanup, docker, dockerEnv, dockerMissing, startServer, tempDir } from '../support/engine-api.js';

after(cleanup);

const MULTI = [
  'FROM busybox AS build', 'RUN echo built > /out', 'ENV STAGE=build',
  'FROM busybox', 'COPY --from=build /out /app/out', 'COPY hello.txt /app/', 'ENV A=1', 'CMD ["cat", "/app/out"]', '',
].join('\n');

async function ok(root: string, args: string[]): Promise<string> {
  const r = await slipway(root, args);
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** The full ids of an image's chain, top first. */
async function chain(root: string, ref: string): Promise<string[]> {
  return (await ok(root, ['history', '-q', '--no-trunc', ref])).trim().split('\n');
}

async function freshRoot(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'slipway-fresh-'));
}

/** `inspect` without the host path of the layer folder. */
async function inspected(root: string, ref: string): Promise<unknown> {
  const doc = JSON.parse(await ok(root, ['inspect', ref])) as Array<Record<string, unknown>>;
  for (const d of doc) delete d['GraphDriver'];
  return doc;
}

test('CLI: a multi-stage image and busybox keep their ids, history and config through save and load, in both formats', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: MULTI, 'hello.txt': 'hello\n' });
  await ok(root, ['build', '-t', 'multi:1', ctx]);
  const ids = await chain(root, 'multi:1');
  const busybox = await chain(root, 'busybox');
  assert.equal(ids.length, 5);
  assert.equal(ids[ids.length - 1], busybox[0]);
  const dir = await tempDir('sw-ids-');
  for (const format of ['docker', 'oci']) {
    const tar = path.join(dir, `${format}.tar`);
    await ok(root, ['save', '--format', format, '-o', tar, 'multi:1', 'busybox']);
    // Into the same store: nothing changes at all.
    const before = await snapshotTree(root);
    assert.equal(await ok(root, ['load', '-i', tar]), 'Loaded image: multi:1\nLoaded image: busybox:latest\n');
    assert.deepEqual(await snapshotTree(root), before, `${format}: loading into the same store changes nothing`);
    // Into a fresh store: the same ids, history and inspect output.
    const fresh = await freshRoot();
    await ok(fresh, ['load', '-i', tar]);
    assert.deepEqual(await chain(fresh, 'multi:1'), ids, `${format}: chain ids`);
    assert.deepEqual(await chain(fresh, 'busybox'), busybox, `${format}: busybox`);
    assert.deepEqual(await inspected(fresh, 'multi:1'), await inspected(root, 'multi:1'));
    assert.equal(await ok(fresh, ['history', '--format', 'json', 'multi:1']), await ok(root, ['history', '--format', 'json', 'multi:1']));
    assert.equal(await ok(fresh, ['run', 'multi:1']), 'built\n');
    // The loaded chain is a chain: prune keeps it, and a build on it works.
    await ok(fresh, ['prune']);
    assert.deepEqual(await chain(fresh, 'multi:1'), ids);
    const on = await makeContext({ Dockerfile: 'FROM multi:1\nRUN cat /app/hello.txt\n' });
    assert.match(await ok(fresh, ['build', on]), /hello\n/);
  }
});

test('busybox keeps its id whatever archive carries it: alone, under another image, docker or OCI, an OCI layout folder', async () => {
  const root = await storeWithBusybox();
  const [busybox] = await chain(root, 'busybox');
  await ok(root, ['build', '-t', 'on:top', await makeContext({ Dockerfile: 'FROM busybox\nRUN echo x > /x\nCMD ["sh"]\n' })]);
  const dir = await tempDir('sw-bb-');
  const archives: Array<[string, string[]]> = [
    ['alone.tar', ['save', '-o', path.join(dir, 'alone.tar'), 'busybox']],
    ['under.tar', ['save', '-o', path.join(dir, 'under.tar'), 'on:top']],
    ['oci.tar', ['save', '--format', 'oci', '-o', path.join(dir, 'oci.tar'), 'on:top']],
  ];
  for (const [name, args] of archives) {
    await ok(root, args);
    const fresh = await freshRoot();
    await ok(fresh, ['load', '-i', path.join(dir, name)]);
    const ids = (await ok(fresh, ['images', '-a', '-q'])).trim().split('\n');
    assert.ok(ids.includes(busybox!.slice(0, 12)), `${name}: ${ids.join(' ')} holds busybox ${busybox!.slice(0, 12)}`);
  }
  const layout = path.join(dir, 'layout');
  await ok(root, ['export-oci', 'on:top', layout]);
  const { execFileSync } = await import('node:child_process');
  execFileSync('tar', ['-C', layout, '-cf', path.join(dir, 'layout.tar'), '.']);
  const fresh = await freshRoot();
  await ok(fresh, ['load', '-i', path.join(dir, 'layout.tar')]);
  assert.deepEqual(await chain(fresh, 'on:top'), await chain(root, 'on:top'));
});

test('loading into the same store leaves the original chain tagged: prune keeps it and the cache still hits', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: MULTI, 'hello.txt': 'hello\n' });
  await ok(root, ['build', '-t', 'multi:1', ctx]);
  const ids = await chain(root, 'multi:1');
  const tar = path.join(await tempDir('sw-same-'), 'm.tar');
  await ok(root, ['save', '-o', tar, 'multi:1']);
  await ok(root, ['rmi', 'multi:1']);
  assert.equal(await ok(root, ['load', '-i', tar]), 'Loaded image: multi:1\n');
  assert.deepEqual(await chain(root, 'multi:1'), ids);
  const again = await ok(root, ['build', '-t', 'multi:1', ctx]);
  assert.match(again, new RegExp(`Successfully built ${ids[0]!.slice(0, 12)}\\n`));
  assert.doesNotMatch(again, /Cache miss/, 'every step from the cache');
  // prune takes the untagged first stage, never the loaded image's chain.
  await ok(root, ['prune']);
  for (const id of ids) await fs.access(path.join(root, 'graph', id, 'json'));
});

test('a forged archive cannot put other content under an id the store has', async () => {
  const root = await storeWithBusybox();
  const [busybox] = await chain(root, 'busybox');
  await ok(root, ['build', '-t', 'mine', await makeContext({ Dockerfile: 'FROM busybox\nRUN echo mine > /f\n' })]);
  const [mine] = await chain(root, 'mine');
  const dir = await tempDir('sw-forge-');
  const other = await freshRoot();
  await ok(other, ['load', '-i', await (async () => { const t = path.join(dir, 'b.tar'); await ok(root, ['save', '-o', t, 'busybox']); return t; })()]);
  await ok(other, ['build', '-t', 'theirs', await makeContext({ Dockerfile: 'FROM busybox\nRUN echo theirs > /f\n' })]);
  const tar = path.join(dir, 'theirs.tar');
  await ok(other, ['save', '-o', tar, 'theirs']);
  // Rewrite the saved chain so that 'theirs' claims the id of 'mine'.
  const { execFileSync } = await import('node:child_process');
  const x = path.join(dir, 'x');
  await fs.mkdir(x);
  execFileSync('tar', ['-C', x, '-xf', tar]);
  const manifest = JSON.parse(await fs.readFile(path.join(x, 'manifest.json'), 'utf8'));
  const chainFile = path.join(x, manifest[0].SlipwayChain);
  const list = JSON.parse(await fs.readFile(chainFile, 'utf8'));
  assert.equal(list[0].id, busybox);
  list[list.length - 1].id = mine;
  await fs.writeFile(chainFile, JSON.stringify(list));
  execFileSync('tar', ['-C', x, '-cf', path.join(dir, 'forged.tar'), '.']);
  const before = await snapshotTree(root);
  const r = await slipway(root, ['load', '-i', path.join(dir, 'forged.tar')]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^Error: image [0-9a-f]{12} in the archive has a different layer or parent than the image with that id in the store\n$/);
  assert.deepEqual(await snapshotTree(root), before);
});

const skip = dockerMissing();
test('docker save and docker load through serve keep every id, into the same store and a fresh one', { skip }, async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: MULTI, 'hello.txt': 'hello\n' });
  await ok(root, ['build', '-t', 'multi:1', ctx]);
  const ids = await chain(root, 'multi:1');
  const fresh = await freshRoot();
  const a = await startServer(root, ['-H', `unix://${path.join(await tempDir('sw-sock-'), 'a.sock')}`]);
  const b = await startServer(fresh, ['-H', `unix://${path.join(await tempDir('sw-sock-'), 'b.sock')}`]);
  try {
    const envA = await dockerEnv(a.host);
    const envB = await dockerEnv(b.host);
    const tar = path.join(await tempDir('sw-dsave-'), 'm.tar');
    const saved = await docker(envA, ['save', '-o', tar, 'multi:1', 'busybox']);
    assert.equal(saved.code, 0, saved.stderr);
    const before = await snapshotTree(root);
    const same = await docker(envA, ['load', '-i', tar]);
    assert.equal(same.stdout, 'Loaded image: multi:1\nLoaded image: busybox:latest\n', same.stderr);
    assert.deepEqual(await snapshotTree(root), before);
    const other = await docker(envB, ['load', '-i', tar]);
    assert.equal(other.code, 0, other.stderr);
    for (const ref of ['multi:1', 'busybox']) {
      const want = await docker(envA, ['inspect', '--format', '{{.Id}}', ref]);
      assert.equal((await docker(envB, ['inspect', '--format', '{{.Id}}', ref])).stdout, want.stdout, ref);
    }
    const history = await docker(envB, ['history', '-q', '--no-trunc', 'multi:1']);
    assert.deepEqual(history.stdout.trim().split('\n').map((l) => l.replace(/^sha256:/, '')), ids);
  } finally {
    await a.stop();
    await b.stop();
  }
});
