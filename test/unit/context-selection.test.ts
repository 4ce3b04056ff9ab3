/**
 * What the build sees of a context folder, and what the farm's context tar sends, with
 * `.dockerignore` exceptions below excluded folders (Docker 20.10's CLI walk and daemon unpack).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ContextSelection } from '../../src/context/context-selection.js';
import { IgnoreMatcher, parseDockerignore } from '../../src/context/dockerignore.js';
import { packContext } from '../../src/context/pack.js';
import { readTarEntries } from '../support/tar.js';

const IGNORE = 'dir\n!dir/keep.txt\n!dir/sub/deep.txt\ncache\nempty\n!empty/none\n';

function context(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-sel-'));
  const files: Record<string, string> = {
    '.dockerignore': IGNORE, Dockerfile: 'FROM busybox\n', 'a.txt': 'a', 'dir/keep.txt': 'k', 'dir/drop.txt': 'd',
    'dir/sub/deep.txt': 'p', 'dir/sub/other.txt': 'o', 'dir/gone/x': 'x', 'cache/x.bin': 'x', 'empty/y': 'y',
  };
  for (const [rel, body] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), body);
  }
  return dir;
}

test('an excluded folder exists for the build only when an exception brings back something below it', () => {
  const dir = context();
  const s = new ContextSelection(dir, new IgnoreMatcher(parseDockerignore(IGNORE)));
  const present = (rel: string): boolean => s.isPresent(rel);
  assert.deepEqual(
    ['a.txt', 'dir', 'dir/keep.txt', 'dir/drop.txt', 'dir/sub', 'dir/sub/deep.txt', 'dir/sub/other.txt', 'dir/gone', 'dir/gone/x', 'cache', 'cache/x.bin', 'empty', 'empty/y'].filter(present),
    ['a.txt', 'dir', 'dir/keep.txt', 'dir/sub', 'dir/sub/deep.txt'],
  );
  // `dir` and `dir/sub` are not sent, only made by the daemon for what is below them.
  assert.deepEqual(['dir', 'dir/sub', 'dir/gone', 'empty', 'a.txt'].filter((r) => s.isImplied(r)), ['dir', 'dir/sub']);
  assert.equal(s.isSent('dir'), false);
  assert.equal(s.isSent('dir/keep.txt'), true);
});

test('the farm context tar sends what the docker CLI sends: not the excluded folders, the kept files below them', async () => {
  const dir = context();
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-sel-tar-')), 'ctx.tar');
  await packContext(dir, out);
  const names = (await readTarEntries(fs.readFileSync(out))).map((e) => e.name.replace(/\/$/, '')).sort();
  assert.deepEqual(names, ['.', '.dockerignore', 'Dockerfile', 'a.txt', 'dir/keep.txt', 'dir/sub/deep.txt']);
});

test('an excluded Dockerfile in an excluded folder is still sent (the CLI adds an exception for it)', async () => {
  const dir = context();
  fs.mkdirSync(path.join(dir, 'build'));
  fs.writeFileSync(path.join(dir, 'build', 'Dockerfile'), 'FROM busybox\n');
  fs.writeFileSync(path.join(dir, 'build', 'other'), 'o');
  fs.writeFileSync(path.join(dir, '.dockerignore'), 'build\n.dockerignore\n');
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-sel-tar-')), 'ctx.tar');
  await packContext(dir, out, 'build/Dockerfile');
  const names = (await readTarEntries(fs.readFileSync(out))).map((e) => e.name.replace(/\/$/, ''));
  assert.ok(names.includes('build/Dockerfile') && names.includes('.dockerignore'), names.join(' '));
  assert.ok(!names.includes('build/other') && !names.includes('build'), names.join(' '));
});
