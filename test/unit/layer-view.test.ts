import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { LayerView } from '../../src/snapshot/layer-view.js';
import { markOpaque } from '../../src/snapshot/xattr.js';

/** Three layer folders in overlay form, top-most first. */
function layers(): string[] {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-lv-'));
  const [top, mid, bottom] = ['top', 'mid', 'bottom'].map((n) => path.join(base, n));
  const mk = (dir: string, files: Record<string, string | null>): void => {
    for (const [rel, content] of Object.entries(files)) {
      const p = path.join(dir, rel);
      fs.mkdirSync(path.dirname(p), { recursive: true });
      if (content === null) fs.mkdirSync(p, { recursive: true });
      else if (content.startsWith('->')) fs.symlinkSync(content.slice(2), p);
      else fs.writeFileSync(p, content);
    }
  };
  mk(bottom!, { 'src/a.txt': 'a', 'src/gone.txt': 'g', 'opq/old.txt': 'o', 'real/r.txt': 'r', 'was-dir/x': 'x' });
  mk(mid!, { 'src/b.txt': 'b', 'opq/new.txt': 'n', 'link': '->/real', 'up': '->../real/..', 'was-dir': 'now a file' });
  mk(top!, { 'src/c.md': 'c' });
  markOpaque(path.join(mid!, 'opq'));
  execFileSync('mknod', [path.join(top!, 'src', 'gone.txt'), 'c', '0', '0']);
  return [top!, mid!, bottom!];
}

test('a merged view: upper entries win, whiteouts delete, opaque folders hide the layers below', () => {
  const v = new LayerView(layers());
  assert.deepEqual(v.readdir('/src'), ['a.txt', 'b.txt', 'c.md']);
  assert.equal(v.lstat('/src/gone.txt'), undefined);
  assert.deepEqual(v.readdir('/opq'), ['new.txt']);
  assert.equal(v.lstat('/opq/old.txt'), undefined);
  assert.ok(v.lstat('/was-dir')?.isFile());
  assert.equal(v.lstat('/was-dir/x'), undefined);
  assert.equal(v.readdir('/was-dir'), undefined);
  assert.deepEqual(v.readdir('/'), ['link', 'opq', 'real', 'src', 'up', 'was-dir']);
});

test('symlinks resolve inside the image; wildcards expand per component', () => {
  const v = new LayerView(layers());
  assert.equal(v.resolve('/link/r.txt'), '/real/r.txt');
  assert.equal(v.resolve('/up/../../real'), '/real');
  assert.deepEqual(v.glob('/src/*.txt'), ['/src/a.txt', '/src/b.txt']);
  assert.deepEqual(v.glob('/src/*.md'), ['/src/c.md']);
  assert.deepEqual(v.glob('/link/*'), ['/link/r.txt']);
  assert.deepEqual(v.glob('/s?c/gone*'), []);
  assert.deepEqual(v.glob('/src/plain'), ['/src/plain']);
});
