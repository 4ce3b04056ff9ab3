import { test, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { linkUnchanged, type PlacedFile } from '../../src/snapshot/link-unchanged.js';

const MTIME = new Date(1_600_000_000_123);
let tmp = '';
let earlier = ''; // the step's earlier layer
let upper = ''; // the new layer, with the empty files the copy left
let scratch = '';
let ctx = ''; // the sources

/** A file in the earlier layer as the copy made it: content, 0644, root's, MTIME. */
function earlierFile(rel: string, content: string): void {
  const p = path.join(earlier, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
  fs.chmodSync(p, 0o644);
  fs.utimesSync(p, MTIME, MTIME);
}

/** A source file and the empty file the copy left for it, and what linkUnchanged is told of it. */
function placed(rel: string, content: string, over: Partial<PlacedFile> = {}): PlacedFile {
  const src = path.join(ctx, rel);
  fs.mkdirSync(path.dirname(src), { recursive: true });
  fs.writeFileSync(src, content);
  const up = path.join(upper, rel);
  fs.mkdirSync(path.dirname(up), { recursive: true });
  fs.writeFileSync(up, '');
  return { rel, src, size: content.length, uid: 0, gid: 0, mode: 0o644, atime: MTIME, mtime: MTIME, ...over };
}

const inode = (p: string) => fs.lstatSync(p).ino;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-link-'));
  earlier = path.join(tmp, 'earlier');
  upper = path.join(tmp, 'upper');
  scratch = path.join(tmp, 'scratch');
  ctx = path.join(tmp, 'ctx');
  for (const d of [earlier, upper, scratch, ctx]) fs.mkdirSync(d);
});

afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('an unchanged file is the earlier layer\'s inode; one whose size, mode, owner or mtime would differ is copied from its source', () => {
  earlierFile('/d/same', 'same content');
  earlierFile('/d/size', 'old');
  earlierFile('/d/mode', 'mode');
  earlierFile('/d/owner', 'owner');
  earlierFile('/d/mtime', 'mtime');
  const files = [
    placed('/d/same', 'same content'),
    placed('/d/size', 'new!'),
    placed('/d/mode', 'mode', { mode: 0o600 }),
    placed('/d/owner', 'owner', { uid: 1000 }),
    placed('/d/mtime', 'mtime', { mtime: new Date(MTIME.getTime() + 1) }),
  ];
  assert.equal(linkUnchanged({ upperDir: upper, scratchDir: scratch, layerDir: earlier, files }), 1);
  assert.equal(inode(path.join(upper, 'd/same')), inode(path.join(earlier, 'd/same')));
  for (const f of files.slice(1)) {
    const up = path.join(upper, f.rel);
    assert.notEqual(inode(up), inode(path.join(earlier, f.rel)), f.rel);
    const st = fs.lstatSync(up);
    assert.deepEqual([fs.readFileSync(up, 'utf8'), st.mode & 0o7777, st.uid, st.mtime.getTime()], [fs.readFileSync(f.src, 'utf8'), f.mode, f.uid, f.mtime.getTime()], f.rel);
  }
  assert.deepEqual(fs.readdirSync(scratch), []);
});

test('the earlier layer is read through real folders only: a symlink there is not followed out of it', () => {
  // The earlier layer's `d` leads to a host folder holding a file the copy would accept.
  const outside = path.join(tmp, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'f'), 'secret');
  fs.chmodSync(path.join(outside, 'f'), 0o644);
  fs.utimesSync(path.join(outside, 'f'), MTIME, MTIME);
  fs.symlinkSync(outside, path.join(earlier, 'd'));
  const f = placed('/d/f', 'public');
  linkUnchanged({ upperDir: upper, scratchDir: scratch, layerDir: earlier, files: [f] });
  assert.notEqual(inode(path.join(upper, 'd/f')), inode(path.join(outside, 'f')));
  assert.equal(fs.readFileSync(path.join(upper, 'd/f'), 'utf8'), 'public');
});

test('a missing earlier file, a path named twice and an inode already linked are copied', () => {
  earlierFile('/a', 'aaaa');
  fs.linkSync(path.join(earlier, 'a'), path.join(earlier, 'b')); // two paths, one inode
  const files = [placed('/a', 'aaaa'), placed('/b', 'aaaa'), placed('/gone', 'gone')];
  files.push({ ...files[2]!, src: path.join(ctx, 'a') }); // /gone again
  fs.writeFileSync(path.join(ctx, 'a'), 'aaaa');
  files[3]!.size = 4;
  assert.equal(linkUnchanged({ upperDir: upper, scratchDir: scratch, layerDir: earlier, files }), 1);
  assert.equal(inode(path.join(upper, 'a')), inode(path.join(earlier, 'a')));
  assert.notEqual(inode(path.join(upper, 'b')), inode(path.join(earlier, 'a')));
  assert.equal(fs.readFileSync(path.join(upper, 'b'), 'utf8'), 'aaaa');
  assert.equal(fs.readFileSync(path.join(upper, 'gone'), 'utf8'), 'aaaa');
});

test('the folders links go into keep the times the copy gave them', () => {
  earlierFile('/d/f', 'content');
  const f = placed('/d/f', 'content');
  const t = new Date(1_500_000_000_456);
  fs.utimesSync(path.join(upper, 'd'), t, t);
  const before = fs.lstatSync(path.join(upper, 'd'), { bigint: true });
  assert.equal(linkUnchanged({ upperDir: upper, scratchDir: scratch, layerDir: earlier, files: [f] }), 1);
  const after = fs.lstatSync(path.join(upper, 'd'), { bigint: true });
  assert.deepEqual([after.mtimeNs, after.atimeNs], [before.mtimeNs, before.atimeNs]);
});

test('a placed path that is not the empty file the copy left is refused', () => {
  earlierFile('/f', 'content');
  const f = placed('/f', 'content');
  fs.writeFileSync(path.join(upper, 'f'), 'something else');
  assert.throws(() => linkUnchanged({ upperDir: upper, scratchDir: scratch, layerDir: earlier, files: [f] }), /not the empty file/);
  assert.throws(() => linkUnchanged({ upperDir: upper, scratchDir: scratch, layerDir: earlier, files: [{ ...f, rel: '/../f' }] }), /bad path/);
});
