/**
 * A cache mount's tree and its change tars, as the farm shares them: scans reuse digests for
 * unchanged files and never follow symlinks, diffs see changes and deletions, a restore never
 * writes or removes outside the folder whatever symlinks the folder (or the record) holds, and
 * a tar whose content does not match the published digest is refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { diffTree, isSafeRel, scanTree } from '../../src/snapshot/mount-tree.js';
import { applyTree, packFiles, unpackFiles } from '../../src/snapshot/mount-delta.js';

async function tmp(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'slipway-mount-tree-'));
}

const sha = (s: string) => crypto.createHash('sha256').update(s).digest('hex');

test('isSafeRel refuses every path that could leave the folder', () => {
  for (const bad of ['', '/etc/passwd', '../x', 'a/../../x', 'a//b', './a', 'a/.', 'a\0b', '..']) assert.equal(isSafeRel(bad), false, JSON.stringify(bad));
  for (const good of ['a', 'a/b', '.npm/_cacache/x', '..a', 'a..b']) assert.equal(isSafeRel(good), true, good);
});

test('scanTree: files, folders and links (never followed); unchanged files keep their digest without a read', async () => {
  const dir = await tmp();
  const outside = await tmp();
  await fs.writeFile(path.join(outside, 'secret'), 'host file');
  await fs.mkdir(path.join(dir, 'sub'));
  await fs.writeFile(path.join(dir, 'sub', 'a'), 'alpha');
  await fs.symlink(outside, path.join(dir, 'escape'));
  const t1 = await scanTree(dir);
  assert.deepEqual(Object.keys(t1).sort(), ['escape', 'sub', 'sub/a']);
  assert.equal(t1['sub/a']!.h, sha('alpha'));
  assert.deepEqual({ t: t1['escape']!.t, h: t1['escape']!.h }, { t: 'l', h: outside });
  // A known digest is trusted while the stat matches (that is what makes a publish incremental).
  const t2 = await scanTree(dir, { ...t1, 'sub/a': { ...t1['sub/a']!, h: 'f'.repeat(64) } });
  assert.equal(t2['sub/a']!.h, 'f'.repeat(64));
  await fs.writeFile(path.join(dir, 'sub', 'a'), 'alpha2');
  await fs.writeFile(path.join(dir, 'new'), 'n');
  await fs.rm(path.join(dir, 'escape'));
  const t3 = await scanTree(dir, t1);
  assert.equal(t3['sub/a']!.h, sha('alpha2'));
  const d = diffTree(t1, t3);
  assert.deepEqual(d.changed.sort(), ['new', 'sub/a'], 'a folder whose mtime moved is not a change');
  assert.deepEqual(d.deleted, ['escape']);
});

test('packFiles and unpackFiles: only the wanted entries, each checked against its digest', async () => {
  const dir = await tmp();
  const stage = await tmp();
  await fs.writeFile(path.join(dir, 'a'), 'aaa');
  await fs.writeFile(path.join(dir, 'b'), 'bbb');
  const tar = path.join(stage, 'x.tar');
  const packed = await packFiles(dir, ['a', 'b', 'gone'], tar);
  assert.deepEqual(Object.keys(packed), ['a', 'b']);
  const got = await unpackFiles(tar, new Map([['b', sha('bbb')]]), stage);
  assert.deepEqual([...got.keys()], ['b']);
  assert.equal(await fs.readFile(got.get('b')!, 'utf8'), 'bbb');
  await assert.rejects(unpackFiles(tar, new Map([['a', sha('not a')]]), stage), /digest sha256:[0-9a-f]{64} is not the published/);
});

test('applyTree never writes or removes through a symlink the folder holds, and refuses unsafe paths', async () => {
  const dir = await tmp();
  const outside = await tmp();
  const stage = await tmp();
  await fs.writeFile(path.join(outside, 'victim'), 'keep me');
  // A step left symlinks where the published tree has a folder and a file.
  await fs.symlink(outside, path.join(dir, 'd'));
  await fs.symlink(path.join(outside, 'victim'), path.join(dir, 'f'));
  const staged = path.join(stage, 's1');
  await fs.writeFile(staged, 'content');
  const staged2 = path.join(stage, 's2');
  await fs.writeFile(staged2, 'content2');
  const e = { m: 0o4755, u: process.getuid!(), g: process.getgid!(), mt: 1_000_000, s: 7, h: sha('content') };
  await applyTree(dir, {
    target: { d: { t: 'd', m: 0o755, u: e.u, g: e.g, mt: 0, s: 0, h: '' }, 'd/victim': { t: 'f', ...e }, f: { t: 'f', ...e }, '../escape': { t: 'f', ...e } },
    files: new Map([['d/victim', staged], ['f', staged2], ['../escape', staged]]),
    apply: ['d', 'd/victim', 'f', '../escape'],
    remove: ['d/../../x'],
  });
  assert.equal(await fs.readFile(path.join(outside, 'victim'), 'utf8'), 'keep me');
  assert.ok((await fs.lstat(path.join(dir, 'd'))).isDirectory());
  assert.equal(await fs.readFile(path.join(dir, 'd', 'victim'), 'utf8'), 'content');
  assert.equal(await fs.readFile(path.join(dir, 'f'), 'utf8'), 'content2');
  assert.equal((await fs.stat(path.join(dir, 'f'))).mode & 0o7777, 0o755, 'setuid is never restored');
  assert.equal(Math.trunc((await fs.stat(path.join(dir, 'f'))).mtimeMs), 1_000_000);
  await assert.rejects(fs.stat(path.join(path.dirname(dir), 'escape')));
  // A removal below a symlink is skipped, not followed.
  await fs.rm(path.join(dir, 'd'), { recursive: true });
  await fs.symlink(outside, path.join(dir, 'd'));
  await applyTree(dir, { target: {}, files: new Map(), apply: [], remove: ['d/victim'] });
  assert.equal(await fs.readFile(path.join(outside, 'victim'), 'utf8'), 'keep me');
});
