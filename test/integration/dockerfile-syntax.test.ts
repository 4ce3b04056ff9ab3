/**
 * BuildKit's Dockerfile syntax through the CLI: `# syntax=`, the automatic platform ARGs and
 * FROM --platform, ADD --checksum (and the git refusals), COPY --exclude/--parents and COPY --link.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import http from 'node:http';
import crypto from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { slipway, storeWithBusybox, makeContext, snapshotTree } from '../support/cli.js';

const other = process.arch === 'x64' ? 'linux/arm64' : 'linux/amd64';
const hostArch = process.arch === 'x64' ? 'amd64' : process.arch;

/** One line, no stack trace, the store as it was. */
async function refused(root: string, ctx: string, re: RegExp, extra: string[] = [], atStep = false): Promise<void> {
  // A step that fails (a download) leaves its build's record for `stats`, as a failing RUN does.
  const kept = (l: string) => !(atStep && l.startsWith('builds/'));
  const tree = async () => (await snapshotTree(root)).filter(kept);
  const before = await tree();
  const r = await slipway(root, ['build', '-t', 'refused', ...extra, ctx]);
  assert.notEqual(r.code, 0, r.stdout);
  const lines = r.stderr.trim().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, re);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  assert.deepEqual(await tree(), before);
}

test('# syntax=docker/dockerfile:1.x is the built-in front end; another image is refused', async () => {
  const root = await storeWithBusybox();
  const ok = await makeContext({ Dockerfile: '# syntax=docker/dockerfile:1.7-labs\nFROM busybox\nRUN echo built > /x\n' });
  const r = await slipway(root, ['build', '-t', 'syn', ok]);
  assert.equal(r.code, 0, r.stderr);
  const bad = await makeContext({ Dockerfile: '# syntax=example.com/custom/frontend:2\nFROM busybox\nRUN true\n' });
  await refused(root, bad, /^Error: Dockerfile:1: unsupported front end "example\.com\/custom\/frontend:2"/);
});

test('platform ARGs: FROM --platform=$BUILDPLATFORM, stage ARGs redeclared, history records them', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({
    Dockerfile: 'ARG TARGETOS\nFROM --platform=$BUILDPLATFORM busybox\nARG TARGETARCH\nARG TARGETPLATFORM\n' +
      'RUN echo "arch=$TARGETARCH plat=$TARGETPLATFORM os=$TARGETOS build=$BUILDARCH."\n',
  });
  const r = await slipway(root, ['build', '-t', 'plat', ctx]);
  assert.equal(r.code, 0, r.stderr);
  // TARGETOS and BUILDARCH were not redeclared in the stage: empty there, as in BuildKit.
  assert.match(r.stdout, new RegExp(`arch=${hostArch} plat=linux/${hostArch} os= build=\\.`));
  const h = await slipway(root, ['history', '--no-trunc', 'plat']);
  assert.match(h.stdout, new RegExp(`\\|2 TARGETARCH=${hostArch} TARGETPLATFORM=linux/${hostArch} /bin/sh -c echo`));
  const o = await slipway(root, ['build', '-t', 'plat2', '--build-arg', 'TARGETARCH=override', ctx]);
  assert.match(o.stdout, /arch=override /);
});

test('another platform is refused, naming the host platform (FROM --platform and build --platform)', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: `FROM --platform=${other} busybox\nRUN true\n` });
  await refused(root, ctx, new RegExp(`Dockerfile:1: FROM --platform=${other}: platform ${other} is not supported: .*host platform linux/${hostArch}`));
  const plain = await makeContext({ Dockerfile: 'FROM busybox\nRUN true\n' });
  await refused(root, plain, new RegExp(`--platform: platform ${other} is not supported: .*host platform linux/${hostArch}`), ['--platform', other]);
  const same = await slipway(root, ['build', '-t', 'p', '--platform', `linux/${hostArch}`, plain]);
  assert.equal(same.code, 0, same.stderr);
});

const payload = 'checked download\n';
const server = http.createServer((req, res) => {
  if (req.url === '/file.txt') res.end(payload);
  else { res.statusCode = 404; res.end(); }
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
after(() => server.close());
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const good = `sha256:${crypto.createHash('sha256').update(payload).digest('hex')}`;

test('ADD --checksum: a matching download is added; a mismatch fails with both digests and the line', async () => {
  const root = await storeWithBusybox();
  const ok = await makeContext({ Dockerfile: `FROM busybox\nADD --checksum=${good} ${base}/file.txt /got.txt\n` });
  const r = await slipway(root, ['build', '-t', 'sum', ok]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await slipway(root, ['run', 'sum', 'cat', '/got.txt'])).stdout, payload);
  const wrong = `sha256:${'1'.repeat(64)}`;
  const bad = await makeContext({ Dockerfile: `FROM busybox\nADD --checksum=${wrong} ${base}/file.txt /got.txt\n` });
  await refused(root, bad, new RegExp(`^Error: Dockerfile:2: ADD failed: digest mismatch ${good}: ${wrong}`), [], true);
  // The checksum may come from an ARG; a wrong one expanded is judged the same.
  const viaArg = await makeContext({ Dockerfile: `FROM busybox\nARG SUM=${wrong}\nADD --checksum=$SUM ${base}/file.txt /got.txt\n` });
  const r3 = await slipway(root, ['build', '-t', 'sum3', viaArg]);
  assert.notEqual(r3.code, 0);
  assert.match(r3.stderr, new RegExp(`^Error: Dockerfile:3: ADD failed: digest mismatch ${good}: ${wrong}`));
});

test('ADD --checksum on a local file, git sources and --keep-git-dir are refused with the line', async () => {
  const root = await storeWithBusybox();
  const rows: Array<[string, RegExp]> = [
    [`ADD --checksum=${good} local.txt /l.txt`, /Dockerfile:2: checksum can't be specified for non-HTTP\(S\) sources/],
    ['ADD https://github.com/moby/buildkit.git#v0.12.0 /src', /Dockerfile:2: ADD failed: git sources are not supported .*no network/],
    ['ADD --keep-git-dir=true https://github.com/moby/buildkit.git /src', /Dockerfile:2: .*not supported/],
  ];
  for (const [line, re] of rows) await refused(root, await makeContext({ Dockerfile: `FROM busybox\n${line}\n`, 'local.txt': 'x' }), re);
});

test('COPY --exclude leaves out matching files and folders; --parents keeps paths, with a /./ pivot', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({
    Dockerfile: 'FROM busybox\nCOPY --exclude=*.log --exclude=cache src/ /app/\nCOPY --exclude=*.md hom* /home-files/\n' +
      'COPY --parents src/./pkg/*.txt cfg/a.conf /par/\nRUN find /app /home-files /par | sort\n',
    'src/a.txt': 'a', 'src/debug.log': 'l', 'src/cache/big.bin': 'b', 'src/pkg/p.txt': 'p', 'src/pkg/deep.log': 'd',
    'home.txt': 'h', 'homer.md': 'm', 'cfg/a.conf': 'c',
  });
  const r = await slipway(root, ['build', '-t', 'sel', ctx]);
  assert.equal(r.code, 0, r.stderr);
  const listed = r.stdout.split('\n').filter((l) => l.startsWith('/'));
  assert.deepEqual(listed, [
    '/app', '/app/a.txt', '/app/pkg', '/app/pkg/deep.log', '/app/pkg/p.txt',
    '/home-files', '/home-files/home.txt',
    '/par', '/par/cfg', '/par/cfg/a.conf', '/par/pkg', '/par/pkg/p.txt',
  ]);
  // --parents never reaches outside the context, pivot or not.
  for (const src of ['../../etc/passwd', 'src/./../../../etc/passwd']) {
    await refused(root, await makeContext({ Dockerfile: `FROM busybox\nCOPY --parents ${src} /d/\n` }), /Dockerfile:2: COPY failed: forbidden path outside the build context/, [], true);
  }
  // The patterns are part of the key: another pattern is another step.
  await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM busybox\nCOPY --exclude=*.txt src/ /app/\nRUN find /app | sort\n');
  const r2 = await slipway(root, ['build', '-t', 'sel', ctx]);
  assert.doesNotMatch(r2.stdout.split('Step 3/3')[0]!, /Using cache/);
  assert.match(r2.stdout, /\/app\/debug\.log/);
  assert.doesNotMatch(r2.stdout, /\/app\/a\.txt/);
});

async function diffIdOf(root: string, ref: string): Promise<{ id: string; parent: string; diffId: string; files: string[] }> {
  const inspect = JSON.parse((await slipway(root, ['inspect', ref])).stdout) as Array<{ Id: string; Parent: string }>;
  const id = inspect[0]!.Id.replace(/^sha256:/, '');
  const dir = path.join(root, 'graph', id);
  const files = (await snapshotTree(path.join(dir, 'layer'))).map((l) => l.replace(/ [0-9a-f]{64}$/, '').split(' ')[0]!);
  return { id, parent: inspect[0]!.Parent.replace(/^sha256:/, ''), diffId: await fs.readFile(path.join(dir, 'diffid'), 'utf8'), files };
}

test('COPY --link: built on an empty root, reused on a new base (new image, same layer), explained', async () => {
  const root = await storeWithBusybox();
  const escape = `/slipway-link-escape-${crypto.randomBytes(4).toString('hex')}`;
  const baseDf = (v: string) => `FROM busybox\nRUN mkdir -p /opt/real && ln -s /opt/real /app && ln -s ${escape} /out && echo ${v} > /base\n`;
  const baseCtx = await makeContext({ Dockerfile: baseDf('v1') });
  assert.equal((await slipway(root, ['build', '-t', 'linkbase', baseCtx])).code, 0);
  const ctx = await makeContext({
    Dockerfile: 'FROM linkbase\nCOPY --link a.txt /app/\nCOPY --link a.txt /out/x/\nRUN test -d /app && test ! -L /app && cat /app/a.txt && ls /opt/real | wc -l && cat /base\n',
    'a.txt': 'linked\n',
  });
  const first = await slipway(root, ['build', '-t', 'linked', ctx]);
  assert.equal(first.code, 0, first.stderr);
  // A destination that is a symlink in the parent is replaced by a folder, never followed.
  assert.match(first.stdout, /linked\n0\nv1\n/);
  await assert.rejects(fs.lstat(escape));
  const layer1 = await slipway(root, ['history', '-q', 'linked']);
  const step2a = layer1.stdout.trim().split('\n')[2]!;
  const a = await diffIdOf(root, step2a);
  assert.deepEqual(a.files.sort(), ['app', 'app/a.txt']);

  // The base changes: the --link layers are taken from the cache and re-stacked on it.
  await fs.writeFile(path.join(baseCtx, 'Dockerfile'), baseDf('v2'));
  assert.equal((await slipway(root, ['build', '-t', 'linkbase', baseCtx])).code, 0);
  // --plan predicts the --link step as a hit.
  assert.match((await slipway(root, ['build', '--plan', '-t', 'linked', ctx])).stdout.split(/^(?=Step \d+\/\d+ : )/m)[1]!, /Plan: hit/);
  const second = await slipway(root, ['build', '-t', 'linked', ctx]);
  assert.equal(second.code, 0, second.stderr);
  const blocks = second.stdout.split(/^(?=Step \d+\/\d+ : )/m);
  assert.match(blocks[1]!, / ---> Using cache\n ---> \(COPY --link: its layer, unchanged, stacked on the new parent\)/);
  assert.match(blocks[2]!, / ---> Using cache/);
  assert.match(blocks[3]!, / ---> Cache miss: parent re-stacked \(step 3: its COPY --link layer was reused on the new base\)/);
  assert.match(second.stdout, /linked\n0\nv2\n/);
  const step2b = (await slipway(root, ['history', '-q', 'linked'])).stdout.trim().split('\n')[2]!;
  const b = await diffIdOf(root, step2b);
  assert.notEqual(b.id, a.id);
  assert.notEqual(b.parent, a.parent);
  assert.equal(b.diffId, a.diffId);
  assert.deepEqual(b.files, a.files);
  // Once re-stacked, the next build is an ordinary hit.
  const third = await slipway(root, ['build', '-t', 'linked', ctx]);
  assert.match(third.stdout, /Cache: 3\/3 steps/);
  // The saved image has the same layer twice over in its two chains, and loads back.
  const tar = path.join(await fs.mkdtemp('/tmp/slipway-link-save-'), 'img.tar');
  assert.equal((await slipway(root, ['save', '-o', tar, 'linked'])).code, 0);
  const other = await storeWithBusybox();
  assert.equal((await slipway(other, ['load', '-i', tar])).code, 0);
});

test('COPY --link: a content change misses with the content explanation, not the parent', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nCOPY --link a.txt /app/\n', 'a.txt': 'one' });
  assert.equal((await slipway(root, ['build', '-t', 'l', ctx])).code, 0);
  await fs.writeFile(path.join(ctx, 'a.txt'), 'two');
  const r = await slipway(root, ['build', '-t', 'l', ctx]);
  assert.match(r.stdout, / ---> Cache miss: COPY: content of a\.txt changed/);
  await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM busybox\nCOPY a.txt /app/\n');
  const r2 = await slipway(root, ['build', '-t', 'l', ctx]);
  assert.match(r2.stdout, / ---> Cache miss: --link removed/);
});
