/**
 * A FROM of an image the store lacks is pulled from the registry its name names, as a Docker
 * daemon does; an unreachable registry fails `pull` and `build` with Docker's wording, dial
 * error included, and leaves the store as it was. Through `serve`, the docker CLI prints what
 * it prints against dockerd.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { makeContext, slipway, snapshotTree, storeWithBusybox } from '../support/cli.js';
import { cleanup, docker, dockerEnv, dockerMissing, startServer, tempDir } from '../support/engine-api.js';
import { missingTools, startRegistry } from '../support/registry.js';

const DIAL = 'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused';

after(cleanup);

test('an unreachable registry: pull and FROM fail with the dial error and change nothing', async () => {
  const root = await storeWithBusybox();
  // A first build remembers the storage driver probe (storage-driver.json): not image state.
  assert.equal((await slipway(root, ['build', '-t', 'warm', await makeContext({ Dockerfile: 'FROM busybox\n' })])).code, 0);
  const before = await snapshotTree(root);
  const pull = await slipway(root, ['pull', '127.0.0.1:1/nothing/here']);
  assert.equal(pull.code, 1);
  assert.equal(pull.stderr, `Error: ${DIAL}\n`);
  assert.equal(pull.stdout, '');
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo first\nFROM 127.0.0.1:1/nothing/here:1.0\nRUN echo never\n' });
  const build = await slipway(root, ['build', '-t', 'x', ctx]);
  assert.equal(build.code, 1);
  assert.equal(build.stderr, `Error: ${DIAL}\n`);
  const after = await snapshotTree(root);
  assert.deepEqual(after.filter((l) => !before.includes(l)), [], 'nothing added or changed');
  assert.deepEqual(before.filter((l) => !after.includes(l)), [], 'nothing removed');
  // --plan writes and pulls nothing: it only says the base is not here.
  const plan = await slipway(root, ['build', '--plan', '-t', 'x', ctx]);
  assert.equal(plan.code, 1);
  assert.match(plan.stderr, /Dockerfile:3: pull access denied for 127\.0\.0\.1:1\/nothing\/here:1\.0/);
});

const noRegistry = missingTools().includes('docker-registry') ? 'docker-registry is missing (scripts/install-deps.sh)' : undefined;

test('FROM an image only a registry has: pulled into the store, then built on', { skip: noRegistry }, async () => {
  const reg = await startRegistry();
  try {
    const src = await storeWithBusybox();
    const ref = `${reg.host}/base/busybox:1`;
    assert.equal((await slipway(src, ['tag', 'busybox', ref])).code, 0);
    const push = await slipway(src, ['push', ref]);
    assert.equal(push.code, 0, push.stderr);
    const root = await tempDir('sw-root-');
    const ctx = await makeContext({ Dockerfile: `FROM ${ref}\nRUN echo built > /on-pulled\n` });
    const b = await slipway(root, ['build', '-t', 'child', ctx]);
    assert.equal(b.code, 0, b.stderr + b.stdout);
    assert.match(b.stdout, /^1: Pulling from base\/busybox\n/m);
    assert.match(b.stdout, new RegExp(`Status: Downloaded newer image for ${reg.host.replace(/\./g, '\\.')}/base/busybox:1\n`));
    const images = await slipway(root, ['images']);
    assert.match(images.stdout, new RegExp(`${reg.host.replace(/\./g, '\\.')}/base/busybox +1 `));
    const run = await slipway(root, ['run', '--rm', 'child', 'cat', '/on-pulled']);
    assert.equal(run.stdout, 'built\n', run.stderr);
    // A second build finds the base in the store and pulls nothing.
    const again = await slipway(root, ['build', '-t', 'child', ctx]);
    assert.doesNotMatch(again.stdout, /Pulling from/);
  } finally {
    await reg.stop();
  }
});

test('through serve, the docker CLI prints the dial error as against dockerd', { skip: dockerMissing() }, async () => {
  const root = await storeWithBusybox();
  const server = await startServer(root, ['-H', `unix://${path.join(await tempDir('sw-sock-'), 'd.sock')}`]);
  try {
    const env = await dockerEnv(server.host);
    const pull = await docker(env, ['pull', '127.0.0.1:1/nothing/here:1.0']);
    assert.equal(pull.code, 1);
    assert.equal(pull.stderr, `Error response from daemon: ${DIAL}\n`);
    const ctx = await makeContext({ Dockerfile: 'FROM 127.0.0.1:1/nothing/here:1.0\n' });
    const build = await docker(env, ['build', '-t', 'x', ctx]);
    assert.equal(build.code, 1);
    assert.match(build.stderr + build.stdout, new RegExp(DIAL.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')));
  } finally {
    await server.stop();
  }
});
