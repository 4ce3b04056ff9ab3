/**
 * The `docker build` flags pipelines pass, through the CLI: --label, --iidfile, --platform,
 * --add-host, --ulimit, --shm-size, --output, --cache-from (local and registry), --pull,
 * --progress, -q; and `-f -` and a context of `-`. Each bad value is refused with one line
 * and leaves the store as it was.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { CLI, slipway, storeWithBusybox, makeContext, snapshotTree } from '../support/cli.js';
import { startRegistry, type TestRegistry } from '../support/registry.js';

const temps: string[] = [];
let reg: TestRegistry | undefined;

async function tmp(prefix: string): Promise<string> {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  temps.push(d);
  return d;
}

before(async () => {
  reg = await startRegistry();
});

after(async () => {
  await reg?.stop();
  for (const d of temps) await fs.rm(d, { recursive: true, force: true });
});

async function ok(root: string, args: string[], input?: string): Promise<string> {
  const r = await slipway(root, args, input !== undefined ? { input } : {});
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

test('--label, --iidfile, --platform linux/amd64 and -q: labels on the image, the id in the file', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo hi > /hi\n' });
  const iid = path.join(await tmp('sw-iid-'), 'iid');
  const out = await ok(root, ['build', '-q', '--label', 'org.opencontainers.image.title=demo', '--label', 'empty', '--iidfile', iid, '--platform', 'linux/amd64', '-t', 'lab', ctx]);
  const id = (await fs.readFile(iid, 'utf8'));
  assert.match(id, /^sha256:[0-9a-f]{64}$/);
  assert.equal(out, `${id}\n`);
  const labels = JSON.parse(await ok(root, ['inspect', '--format', '{{json .Config.Labels}}', 'lab']));
  assert.deepEqual(labels, { 'org.opencontainers.image.title': 'demo', empty: '' });
  assert.equal((await ok(root, ['inspect', '-f', '{{.Id}}', 'lab'])).trim(), id);
});

test('--platform other than the host is refused naming the host platform; the store is unchanged', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN true\n' });
  const before = await snapshotTree(root);
  const r = await slipway(root, ['build', '--platform', 'linux/arm64', ctx]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /platform linux\/arm64 is not supported: .*host platform linux\/amd64/);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.deepEqual(await snapshotTree(root), before);
});

test('--add-host, --ulimit and --shm-size shape the RUN container, not the image or its cache key', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN grep -e db -e v6 /etc/hosts; echo nofile=$(ulimit -n)/$(ulimit -Hn); df -k /dev/shm | tail -1\n' });
  const r = await ok(root, ['build', '--no-cache', '--add-host', 'db:10.1.2.3', '--add-host', 'v6=fd00::1', '--ulimit', 'nofile=512:1024', '--shm-size', '96m', '-t', 'c1', ctx]);
  assert.match(r, /^10\.1\.2\.3\tdb$/m);
  assert.match(r, /^fd00::1\tv6$/m);
  assert.match(r, /^nofile=512\/1024$/m);
  assert.match(r, /^shm\s+98304\s/m);
  const plain = await ok(root, ['build', '--no-cache', '-t', 'c2', ctx]);
  assert.doesNotMatch(plain, /10\.1\.2\.3/);
  assert.match(plain, /^shm\s+65536\s/m);
  // The same step with other container options is the same cache entry.
  const again = await ok(root, ['build', '--add-host', 'db:10.9.9.9', '--shm-size', '1g', ctx]);
  assert.match(again, /Using cache/);
});

test('bad --add-host, --ulimit, --shm-size, --output and --progress values are one-line usage errors; the store is unchanged', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN true\n' });
  const before = await snapshotTree(root);
  const cases: Array<[string[], RegExp]> = [
    [['--add-host', 'nocolon'], /bad format for add-host/],
    [['--add-host', 'h:999.1.1.1'], /invalid IP address/],
    [['--add-host', 'h:host-gateway'], /host-gateway is not supported/],
    [['--ulimit', 'nofiles=1'], /invalid ulimit type: nofiles/],
    [['--ulimit', 'nofile=10:5'], /soft limit must be less than or equal to hard limit/],
    [['--shm-size', 'lots'], /invalid size/],
    [['--output', 'type=registry'], /type=registry is not supported/],
    [['--output', 'type=tar'], /dest= is required/],
    [['--progress', 'fancy'], /invalid --progress "fancy": auto, legacy, tty, plain or rawjson/],
  ];
  for (const [flags, re] of cases) {
    const r = await slipway(root, ['build', ...flags, ctx]);
    assert.notEqual(r.code, 0, flags.join(' '));
    assert.match(r.stderr, re, flags.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  await ok(root, ['build', '--progress', 'legacy', '-q', ctx]);
  const r = await slipway(root, ['build', '--progress=fancy', ctx]);
  assert.notEqual(r.code, 0);
  // Only the legacy build added images; the refused ones left nothing.
  assert.ok((await snapshotTree(root)).length >= before.length);
});

test('--output type=local and type=tar export the final filesystem (whiteouts applied) beside the image', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN mkdir /app && echo v1 > /app/a && echo gone > /app/b\nRUN rm /app/b && echo v2 > /app/a && rm /bin/vi\n' });
  const dir = await tmp('sw-out-');
  const dest = path.join(dir, 'rootfs');
  const tarFile = path.join(dir, 'rootfs.tar');
  await ok(root, ['build', '-t', 'exported', '--output', `type=local,dest=${dest}`, '--output', `type=tar,dest=${tarFile}`, ctx]);
  assert.equal(await fs.readFile(path.join(dest, 'app/a'), 'utf8'), 'v2\n');
  await assert.rejects(fs.lstat(path.join(dest, 'app/b')));
  await assert.rejects(fs.lstat(path.join(dest, 'bin/vi')));
  assert.ok((await fs.lstat(path.join(dest, 'bin/busybox'))).isFile());
  const names = execFileSync('tar', ['tf', tarFile], { encoding: 'utf8' }).split('\n');
  assert.ok(names.includes('app/a'));
  assert.ok(!names.includes('app/b') && !names.includes('bin/vi'));
  assert.ok(!names.some((n) => n.includes('.wh.')), 'no whiteout in an exported filesystem');
  assert.equal(execFileSync('tar', ['xOf', tarFile, 'app/a'], { encoding: 'utf8' }), 'v2\n');
  // A folder that is not empty is refused before anything is built.
  const busy = await tmp('sw-busy-');
  await fs.writeFile(path.join(busy, 'keep'), 'x');
  const r = await slipway(root, ['build', '--output', `type=local,dest=${busy}`, ctx]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /is not empty/);
  assert.equal(await fs.readFile(path.join(busy, 'keep'), 'utf8'), 'x');
});

const CHAIN = 'FROM busybox\nENV A=1\nRUN echo one > /one\nRUN echo two > /two\n';

test('--cache-from a local image (loaded in another store): every step hits and the id is the same', async () => {
  const first = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: CHAIN });
  const id = (await ok(first, ['build', '-q', '-t', 'app:1', ctx])).trim();
  const tarFile = path.join(await tmp('sw-cf-'), 'app.tar');
  await ok(first, ['save', '-o', tarFile, 'app:1']);
  const second = await storeWithBusybox();
  await ok(second, ['load', '-i', tarFile]);
  // Without --cache-from the loaded image is no cache: its steps' keys are unknown here.
  const third = await storeWithBusybox();
  await ok(third, ['load', '-i', tarFile]);
  assert.match(await ok(third, ['build', '--no-cache', '-t', 'x', ctx]), /Cache miss/);
  const b = await ok(second, ['build', '--cache-from', 'app:1', '--cache-from', 'missing:1', '-t', 'app:2', ctx]);
  assert.doesNotMatch(b, /Cache miss/);
  assert.equal(b.match(/---> Using cache/g)?.length, 3);
  assert.match(b, /\[WARNING\]: --cache-from missing:1: no such image/);
  assert.match(b, new RegExp(`Successfully built ${id.slice(7, 19)}`));
  // A changed step misses, and so does everything after it.
  const ctx2 = await makeContext({ Dockerfile: CHAIN.replace('echo one', 'echo ONE') });
  const c = await ok(second, ['build', '--cache-from', 'app:1', ctx2]);
  assert.equal(c.match(/---> Using cache/g)?.length, 1);
  assert.equal(c.match(/Cache miss/g)?.length, 2);
});

test('--cache-from a registry reference: only the layers of steps that hit are downloaded', async () => {
  const first = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: `${CHAIN}RUN head -c 300000 /dev/urandom > /big\n` });
  await ok(first, ['build', '-q', '-t', `${reg!.host}/cf/app:1`, ctx]);
  await ok(first, ['push', `${reg!.host}/cf/app:1`]);
  const second = await storeWithBusybox();
  const ctx2 = await makeContext({ Dockerfile: `${CHAIN}RUN echo different > /big\n` });
  const offset = await reg!.logOffset();
  const b = await ok(second, ['build', '--cache-from', `${reg!.host}/cf/app:1`, '-t', 'local:1', ctx2]);
  assert.equal(b.match(/---> Using cache/g)?.length, 3, b);
  assert.equal(b.match(/Cache miss/g)?.length, 1, b);
  const blobGets = (await reg!.requestsSince(offset)).filter((r) => r.method === 'GET' && r.path.includes('/blobs/'));
  // The config, and the layers of the two RUN steps that hit (busybox is local; /big is not fetched).
  assert.equal(blobGets.length, 3, JSON.stringify(blobGets));
  assert.equal(await ok(second, ['run', '--rm', 'local:1', 'cat', '/one', '/two', '/big']), 'one\ntwo\ndifferent\n');
  // The store never got the cache source's tag.
  assert.doesNotMatch(await ok(second, ['images']), /cf\/app/);
});

test('--pull pulls a base that names a registry again; a Docker Hub name keeps the stored image, with a warning', async () => {
  const root = await storeWithBusybox();
  const base = `${reg!.host}/pull/base:1`;
  const v1 = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo v1 > /v\n' });
  const v2 = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo v2 > /v\n' });
  const pusher = await storeWithBusybox();
  await ok(pusher, ['build', '-q', '-t', base, v1]);
  await ok(pusher, ['push', base]);
  const app = await makeContext({ Dockerfile: `FROM ${base}\nRUN cat /v\n` });
  assert.match(await ok(root, ['build', app]), /^v1$/m);
  await ok(pusher, ['build', '-q', '-t', base, v2]);
  await ok(pusher, ['push', base]);
  assert.match(await ok(root, ['build', app]), /Using cache/, 'without --pull the stored base is used');
  const pulled = await ok(root, ['build', '--pull', app]);
  assert.match(pulled, /^v2$/m);
  const hub = await makeContext({ Dockerfile: 'FROM busybox\nRUN true\n' });
  assert.match(await ok(root, ['build', '--pull', hub]), /\[WARNING\]: --pull: busybox names no registry/);
});

test('-f - reads the Dockerfile from stdin; a context of - reads a tar or a lone Dockerfile; both at once is refused', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ 'data.txt': 'from the context\n' });
  const a = await ok(root, ['build', '-f', '-', ctx], 'FROM busybox\nCOPY data.txt /\nRUN cat /data.txt\n');
  assert.match(a, /^from the context$/m);
  const tarFile = path.join(await tmp('sw-stdin-'), 'ctx.tar');
  const src = await makeContext({ Dockerfile: 'FROM busybox\nCOPY . /c/\nRUN ls /c && cat /c/x\n', x: 'x-content\n', 'alt.Dockerfile': 'FROM busybox\nRUN echo alt\n' });
  execFileSync('tar', ['cf', tarFile, '-C', src, '.']);
  const tarText = await fs.readFile(tarFile, 'latin1');
  const b = await ok(root, ['build', '-'], tarText);
  assert.match(b, /^x-content$/m);
  // A gzipped context (binary on stdin), with -f naming a file inside it.
  const viaShell = execFileSync('sh', ['-c', 'gzip -c "$1" | "$2" "$3" --root "$4" build -f alt.Dockerfile -', 'sh', tarFile, process.execPath, CLI, root], { encoding: 'utf8' });
  assert.match(viaShell, /^alt$/m);
  const d = await ok(root, ['build', '-'], 'FROM busybox\nRUN echo lone dockerfile\n');
  assert.match(d, /^lone dockerfile$/m);
  const both = await slipway(root, ['build', '-f', '-', '-'], { input: 'FROM busybox\n' });
  assert.notEqual(both.code, 0);
  assert.match(both.stderr, /can't use stdin for both build context and dockerfile/);
  const escape = await slipway(root, ['build', '-f', '../../etc/passwd', '-'], { input: tarText });
  assert.notEqual(escape.code, 0);
  assert.match(escape.stderr, /names a file inside the archive/);
});

test('a context tar on stdin cannot write outside its folder', async () => {
  const root = await storeWithBusybox();
  const dir = await tmp('sw-evil-');
  const victim = path.join(dir, 'victim');
  await fs.mkdir(path.join(dir, 'src'));
  await fs.writeFile(path.join(dir, 'src', 'Dockerfile'), 'FROM busybox\n');
  await fs.symlink(dir, path.join(dir, 'src', 'link'));
  await fs.writeFile(path.join(dir, 'payload'), 'pwned');
  // An entry through a symlink in the archive, and one with `..`.
  const tarFile = path.join(dir, 'evil.tar');
  execFileSync('tar', ['cf', tarFile, '-C', path.join(dir, 'src'), 'Dockerfile', 'link']);
  execFileSync('tar', ['rf', tarFile, '-C', dir, '--transform', 's,^payload$,link/victim,', 'payload']);
  execFileSync('tar', ['rf', tarFile, '-C', dir, '--transform', 's,^payload$,../../victim2,', '-P', 'payload']);
  const r = await slipway(root, ['build', '-'], { input: await fs.readFile(tarFile, 'latin1') });
  void r;
  await assert.rejects(fs.lstat(victim));
  await assert.rejects(fs.lstat(path.join(path.dirname(root), 'victim2')));
});
