import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { LayerView } from '../../src/snapshot/layer-view.js';
import { markOpaque } from '../../src/snapshot/xattr.js';
import { mkdirInUpper, readFileFromLayers } from '../../src/snapshot/rootfs.js';

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

test('WORKDIR makes the folders the image does not show: under an opaque folder, under a whiteout', async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-wd-'));
  const [top, bottom, upper] = ['top', 'bottom', 'upper'].map((n) => path.join(base, n));
  // The bottom layer has /a/b/c/f and /gone/x; the top one made /a again (opaque: `rm -rf /a && mkdir /a`) and deleted /gone.
  fs.mkdirSync(path.join(bottom!, 'a/b/c'), { recursive: true });
  fs.writeFileSync(path.join(bottom!, 'a/b/c/f'), 'hi');
  fs.mkdirSync(path.join(bottom!, 'gone/x'), { recursive: true });
  fs.mkdirSync(path.join(top!, 'a'), { recursive: true, mode: 0o750 });
  fs.chmodSync(path.join(top!, 'a'), 0o750);
  fs.writeFileSync(path.join(top!, 'a/keep'), 'x');
  markOpaque(path.join(top!, 'a'));
  execFileSync('mknod', [path.join(top!, 'gone'), 'c', '0', '0']);
  fs.mkdirSync(upper!);
  try {
    const lowers = [top!, bottom!];
    assert.equal(await mkdirInUpper(lowers, upper!, '/a/b'), true);
    // /a copied up as the top layer has it; /a/b made, as the overlay shows no /a/b.
    assert.equal(fs.statSync(path.join(upper!, 'a')).mode & 0o7777, 0o750);
    assert.ok(fs.statSync(path.join(upper!, 'a/b')).isDirectory());
    assert.deepEqual(fs.readdirSync(path.join(upper!, 'a')), ['b']);
    assert.equal(await mkdirInUpper(lowers, upper!, '/gone/x'), true);
    assert.ok(fs.statSync(path.join(upper!, 'gone/x')).isDirectory());
    // A folder the image shows is left as it is: nothing is copied up.
    const other = path.join(base, 'upper2');
    fs.mkdirSync(other);
    assert.equal(await mkdirInUpper(lowers, other, '/a'), true);
    assert.deepEqual(fs.readdirSync(other), []);
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});

test('a file of the image (a user\'s passwd) is read as the overlay shows it: an opaque folder hides the layers below', async () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-rf-'));
  const [top, mid, bottom] = ['top', 'mid', 'bottom'].map((n) => path.join(base, n));
  try {
    fs.mkdirSync(path.join(bottom!, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(bottom!, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    fs.writeFileSync(path.join(bottom!, 'etc/group'), 'root:x:0:\n');
    // mid: `rm -rf /etc && mkdir /etc && echo ... > /etc/group` (opaque /etc); top: an unrelated layer.
    fs.mkdirSync(path.join(mid!, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(mid!, 'etc/group'), 'staff:x:50:\n');
    markOpaque(path.join(mid!, 'etc'));
    fs.mkdirSync(path.join(top!, 'tmp'), { recursive: true });
    assert.equal(await readFileFromLayers([top!, mid!, bottom!], 'etc/passwd'), undefined);
    assert.equal(await readFileFromLayers([top!, mid!, bottom!], 'etc/group'), 'staff:x:50:\n');
    // Without the opaque layer, the bottom layer's file is the image's.
    assert.equal(await readFileFromLayers([top!, bottom!], 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
});
