import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { extract } from 'tar-stream';
import { packLayer } from '../../src/snapshot/pack.js';
import { slipway, storeWithBusybox, makeContext } from '../support/cli.js';

/**
 * A touched `COPY data/ /data/` links the files whose content did not change from the step's
 * earlier layer (layers are never changed once made) rather than copying them: the same
 * layer, without copying what it already has.
 */

const BIG = 100 * 1024; // above the size below which files are always copied
const big = (seed: string) => crypto.createHash('sha512').update(seed).digest().toString('hex').repeat(Math.ceil(BIG / 128)).slice(0, BIG);

async function build(root: string, ctx: string, extra: string[] = []): Promise<string> {
  const r = await slipway(root, ['build', ...extra, '-t', 'c', ctx]);
  assert.equal(r.code, 0, r.stderr);
  const id = await slipway(root, ['inspect', '-f', '{{.Id}}', 'c']);
  return path.join(root, 'graph', id.stdout.trim().replace(/^sha256:/, ''), 'layer');
}

const ino = (p: string) => fs.lstatSync(p).ino;

/** Every path below the layer's /data (not /data itself, made at build time): type, mode, owner, size, mtime (ns), content. */
function listing(layer: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(layer, rel)).sort()) {
      const r = `${rel}/${name}`;
      const st = fs.lstatSync(path.join(layer, r), { bigint: true });
      const sum = st.isFile() ? crypto.createHash('sha256').update(fs.readFileSync(path.join(layer, r))).digest('hex') : '';
      out.push(`${r} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.size} ${st.mtimeNs} ${sum}`);
      if (st.isDirectory()) walk(r);
    }
  };
  walk('data');
  return out;
}

/** The layer's tar as the pack writes it: each entry's header fields and body hash, but the /data folder's mtime. */
async function tarEntries(layer: string): Promise<string[]> {
  const chunks: Buffer[] = [];
  const sink = new (await import('node:stream')).PassThrough();
  sink.on('data', (c: Buffer) => chunks.push(c));
  await packLayer(layer, sink);
  const out: string[] = [];
  const ex = extract();
  ex.on('entry', (h, stream, next) => {
    const body: Buffer[] = [];
    stream.on('data', (c: unknown) => body.push(c as Buffer));
    stream.on('end', () => {
      const mtime = h.name === 'data/' ? '-' : String(h.mtime?.getTime());
      out.push(`${h.name} ${h.type} ${h.mode} ${h.uid}:${h.gid} ${h.size} ${mtime} ${h.linkname ?? ''} ${crypto.createHash('sha256').update(Buffer.concat(body)).digest('hex')}`);
      next();
    });
  });
  await new Promise<void>((resolve, reject) => {
    ex.on('finish', resolve);
    ex.on('error', reject);
    ex.end(Buffer.concat(chunks));
  });
  return out;
}

test('a touched COPY links its unchanged files from its earlier layer, and the layer is the one a full copy gives', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({
    Dockerfile: 'FROM busybox\nCOPY data/ /data/\n',
    'data/a.bin': big('a'), 'data/b.bin': big('b'), 'data/sub/c.bin': big('c'), 'data/small.txt': 'small\n',
  });
  const first = await build(root, ctx);
  fs.writeFileSync(path.join(ctx, 'data/b.bin'), big('b2'));
  const second = await build(root, ctx);
  assert.notEqual(second, first);
  // Unchanged big files: the earlier layer's inodes. The changed one and the small one: copies.
  for (const f of ['data/a.bin', 'data/sub/c.bin']) assert.equal(ino(path.join(second, f)), ino(path.join(first, f)), f);
  for (const f of ['data/b.bin', 'data/small.txt']) assert.notEqual(ino(path.join(second, f)), ino(path.join(first, f)), f);
  assert.equal(fs.readFileSync(path.join(second, 'data/b.bin'), 'utf8'), big('b2'));
  assert.deepEqual(fs.readdirSync(path.join(root, 'graph', '_tmp')), []);
  // The same files, attributes and tar as a store that copied everything.
  const fresh = await build(await storeWithBusybox(), ctx);
  assert.deepEqual(listing(second), listing(fresh));
  const entries = await tarEntries(second);
  assert.deepEqual(entries, await tarEntries(fresh));
  assert.ok(entries.every((e) => !/ link /.test(e)), 'no hard-link entries in the tar');
});

test('an unchanged file whose mtime changed, a COPY of two sources and --no-cache copy rather than link', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nCOPY data/ /data/\n', 'data/a.bin': big('a'), 'data/b.bin': big('b'), 'data/c.bin': big('c') });
  const first = await build(root, ctx);
  // a.bin: the same content, another mtime (not in the key: c.bin's change makes the step run).
  const t = new Date(1_700_000_000_000);
  fs.utimesSync(path.join(ctx, 'data/a.bin'), t, t);
  fs.writeFileSync(path.join(ctx, 'data/c.bin'), big('c2'));
  const second = await build(root, ctx);
  assert.notEqual(ino(path.join(second, 'data/a.bin')), ino(path.join(first, 'data/a.bin')));
  assert.equal(fs.statSync(path.join(second, 'data/a.bin')).mtime.getTime(), t.getTime());
  assert.equal(ino(path.join(second, 'data/b.bin')), ino(path.join(first, 'data/b.bin')));
  fs.writeFileSync(path.join(ctx, 'data/a.bin'), big('a2'));
  const third = await build(root, ctx, ['--no-cache']);
  assert.notEqual(ino(path.join(third, 'data/b.bin')), ino(path.join(second, 'data/b.bin')));

  // Two sources may write one path; which wrote it last is not recorded: nothing is linked.
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM busybox\nCOPY data/a.bin data/b.bin /data/\n');
  const two = await build(root, ctx);
  fs.writeFileSync(path.join(ctx, 'data/a.bin'), big('a3'));
  const twoAgain = await build(root, ctx);
  assert.notEqual(ino(path.join(twoAgain, 'data/b.bin')), ino(path.join(two, 'data/b.bin')));
  assert.equal(fs.readFileSync(path.join(twoAgain, 'data/a.bin'), 'utf8'), big('a3'));
});
