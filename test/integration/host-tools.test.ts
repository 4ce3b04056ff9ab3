/**
 * Slipway on a machine without some host tools, simulated by running the CLI with a PATH of
 * symlinks that leaves them out: builds need no `getfattr`/`setfattr` (xattrs go through a
 * native binding, for both storage drivers, packing, unpacking and loading), and a missing
 * tool that is still needed fails with one line naming its Debian package, not a stack trace.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { makeContext, pathWithout, slipway, storeWithBusybox } from '../support/cli.js';
import { readTarEntries } from '../support/tar.js';

const NO_ATTR = ['getfattr', 'setfattr'];

// /var is an empty folder of the base: deleted and made again in one RUN, it is opaque in the layer.
const DOCKERFILE = `FROM busybox
WORKDIR /srv/app
RUN rm -rf /var && mkdir -p /var/new && echo data > /var/new/file && rm /bin/true
COPY hello.txt ./
`;

/** The members of the last layer of a `docker save` archive. */
async function lastLayerNames(saved: string): Promise<string[]> {
  const outer = await readTarEntries(await fs.readFile(saved));
  const manifest = JSON.parse(outer.find((e) => e.name === 'manifest.json')!.body.toString()) as Array<{ Layers: string[] }>;
  const layers = manifest[0]!.Layers;
  const last = outer.find((e) => e.name === layers[layers.length - 1])!;
  return (await readTarEntries(last.body)).map((e) => e.name);
}

for (const driver of ['overlay', 'vfs'] as const) {
  test(`without getfattr/setfattr: WORKDIR, RUN (whiteouts, an opaque folder) and COPY build with the ${driver} driver`, async () => {
    const env = { PATH: await pathWithout(NO_ATTR) };
    assert.throws(() => execFileSync('getfattr', ['--version'], { env, stdio: 'ignore' }), 'the PATH really lacks getfattr');
    const root = await storeWithBusybox();
    const ctx = await makeContext({ Dockerfile: DOCKERFILE, 'hello.txt': 'hello\n' });
    const r = await slipway(root, ['build', '--storage-driver', driver, '-t', 'noattr', ctx], { env });
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.doesNotMatch(r.stderr, /ENOENT|\n\s+at /);
    const saved = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-noattr-')), 'x.tar');
    const s = await slipway(root, ['save', '-o', saved, 'noattr'], { env });
    assert.equal(s.code, 0, s.stderr);
    // The RUN's layer, packed without getfattr, still says that /var is opaque and /bin/true gone.
    const manifest = (await readTarEntries(await fs.readFile(saved))).find((e) => e.name === 'manifest.json')!;
    const layerNames = JSON.parse(manifest.body.toString())[0].Layers as string[];
    assert.equal(layerNames.length, 4); // busybox, WORKDIR, RUN, COPY
    const outer = await readTarEntries(await fs.readFile(saved));
    const runLayer = (await readTarEntries(outer.find((e) => e.name === layerNames[2])!.body)).map((e) => e.name);
    assert.ok(runLayer.includes('var/.wh..wh..opq'), runLayer.join(' '));
    assert.ok(runLayer.includes('bin/.wh.true'), runLayer.join(' '));
    assert.deepEqual(await lastLayerNames(saved), ['srv/', 'srv/app/', 'srv/app/hello.txt']);

    // Loaded into another store (unpacking sets the opaque xattr) and built on again there.
    const other = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-root-'));
    const l = await slipway(other, ['load', '-i', saved], { env });
    assert.equal(l.code, 0, l.stderr);
    const ctx2 = await makeContext({ Dockerfile: 'FROM noattr\nRUN ls /var > /listing && test ! -e /bin/true\n' });
    const b = await slipway(other, ['build', '--storage-driver', driver, '-t', 'again', ctx2], { env });
    assert.equal(b.code, 0, b.stderr + b.stdout);
    const run = await slipway(other, ['run', '--rm', 'again', 'cat', '/listing'], { env });
    assert.equal(run.stdout, 'new\n', run.stderr);
  });
}

test('a missing decompressor: one line naming its Debian package, no stack trace', async () => {
  const env = { PATH: await pathWithout(['xz']) };
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-xz-'));
  await fs.writeFile(path.join(dir, 'f'), 'x\n');
  execFileSync('tar', ['-C', dir, '-cf', path.join(dir, 'rootfs.tar'), 'f']);
  execFileSync('xz', ['-k', path.join(dir, 'rootfs.tar')]);
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-root-'));
  const r = await slipway(root, ['import', path.join(dir, 'rootfs.tar.xz'), 'fromxz:1'], { env });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'Error: xz is not installed (to decompress xz archives): install the Debian package xz-utils (apt-get install xz-utils)\n');
  // With the tool there, the same archive imports.
  const ok = await slipway(root, ['import', path.join(dir, 'rootfs.tar.xz'), 'fromxz:1']);
  assert.equal(ok.code, 0, ok.stderr);
});
