import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import type net from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { slipway, storeWithBusybox, makeContext, snapshotTree } from '../support/cli.js';
import { startRegistry, blobUploads, type TestRegistry } from '../support/registry.js';
import { startTokenProxy } from '../support/registry-proxy.js';
import { pushImage } from '../../src/registry/push.js';
import { pullImage } from '../../src/registry/pull.js';
import { parseRemoteReference } from '../../src/registry/remote-reference.js';
import { parseManifest, selectManifest, MEDIA } from '../../src/registry/manifest.js';
import { credentialsFromRegistryAuth } from '../../src/registry/auth.js';
import type { RegistryProgress } from '../../src/registry/progress.js';
import { StoreLayout } from '../../src/store/layout.js';

const exec = promisify(execFile);
const SCOOBY = 'FROM busybox\nRUN touch scooby_snacks.txt\n';
const WHITEOUTS = `FROM busybox
RUN mkdir -p /data/sub && echo a > /data/a && echo c > /data/sub/c && echo hi > /etc/motd
RUN rm /bin/vi /etc/group && rm -rf /data && mkdir /data && echo new > /data/new
`;

let reg: TestRegistry;
let config: string;
const temps: string[] = [];

before(async () => {
  reg = await startRegistry();
  config = await tmpDir('config');
});

after(async () => {
  await reg?.stop();
  for (const d of temps) await fs.rm(d, { recursive: true, force: true });
});

async function tmpDir(label: string): Promise<string> {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), `slipway-reg-${label}-`));
  temps.push(d);
  return d;
}

/** slipway with this file's private config folder (credentials) unless another is given. */
function sw(root: string, args: string[], opts: { input?: string; config?: string } = {}) {
  return slipway(root, args, { ...(opts.input !== undefined ? { input: opts.input } : {}), env: { SLIPWAY_CONFIG: opts.config ?? config } });
}

let seed: Promise<string> | undefined;
/** A store with busybox and the seed's image, tagged `<registry>/thoward/scooby_snacks` (made once). */
function seedRoot(): Promise<string> {
  seed ??= (async () => {
    const root = await storeWithBusybox();
    temps.push(root);
    const b = await sw(root, ['build', '-t', `${reg.host}/thoward/scooby_snacks`, await makeContext({ Dockerfile: SCOOBY })]);
    assert.equal(b.code, 0, b.stderr);
    return root;
  })();
  return seed;
}

async function freshRoot(): Promise<string> {
  return tmpDir('root');
}

function lastDigest(stdout: string): string {
  const m = /^\S+: digest: (sha256:[0-9a-f]{64}) size: \d+$/m.exec(stdout);
  assert.ok(m, `no digest line in:\n${stdout}`);
  return m[1]!;
}

/** The layer folders of an image, base first (empty layers skipped). */
async function layerDirs(root: string, ref: string): Promise<string[]> {
  const h = await sw(root, ['history', '--format', 'json', ref]);
  assert.equal(h.code, 0, h.stderr);
  const rows = h.stdout.trim().split('\n').map((l) => JSON.parse(l) as { id: string; emptyLayer: boolean });
  return rows.filter((r) => !r.emptyLayer).reverse().map((r) => path.join(root, 'graph', r.id, 'layer'));
}

async function inspect(root: string, ref: string): Promise<Record<string, unknown>> {
  const r = await sw(root, ['inspect', ref]);
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as Array<Record<string, unknown>>)[0]!;
}

async function skopeoJson(args: string[]): Promise<Record<string, unknown>> {
  return JSON.parse((await exec('skopeo', args, { maxBuffer: 64 << 20 })).stdout) as Record<string, unknown>;
}

/** Copies a registry image into an OCI layout with skopeo and unpacks it with umoci; returns the rootfs. */
async function unpackWithUmoci(ref: string): Promise<{ rootfs: string; layout: string }> {
  const dir = await tmpDir('umoci');
  await exec('skopeo', ['copy', '--src-tls-verify=false', `docker://${ref}`, `oci:${dir}/oci:latest`]);
  await exec('umoci', ['unpack', '--image', `${dir}/oci:latest`, `${dir}/bundle`]);
  return { rootfs: path.join(dir, 'bundle', 'rootfs'), layout: path.join(dir, 'oci') };
}

let pushed: Promise<{ ref: string; digest: string }> | undefined;
/** The seed image pushed once (the first test pushes it and checks the output). */
function pushedSeed(): Promise<{ ref: string; digest: string }> {
  pushed ??= (async () => {
    const root = await seedRoot();
    const ref = `${reg.host}/thoward/scooby_snacks`;
    const p = await sw(root, ['push', ref]);
    assert.equal(p.code, 0, p.stderr);
    return { ref, digest: lastDigest(p.stdout) };
  })();
  return pushed;
}

test('push: the seed image reaches the registry; skopeo sees its config, umoci unpacks it; a second push sends no blob', async () => {
  const root = await seedRoot();
  const ref = `${reg.host}/thoward/scooby_snacks`;
  const offset = await reg.logOffset();
  pushed = (async () => {
    const p = await sw(root, ['push', ref]);
    assert.equal(p.code, 0, p.stderr);
    const lines = p.stdout.trimEnd().split('\n');
    assert.equal(lines[0], `The push refers to repository [${ref}]`);
    const ids = lines.filter((l) => l.endsWith(': Preparing')).map((l) => l.slice(0, 12));
    assert.equal(ids.length, 2, p.stdout);
    for (const id of ids) {
      assert.match(id, /^[0-9a-f]{12}$/);
      assert.ok(lines.includes(`${id}: Pushing`) && lines.includes(`${id}: Pushed`), p.stdout);
    }
    assert.match(lines[lines.length - 1]!, /^latest: digest: sha256:[0-9a-f]{64} size: \d+$/);
    return { ref, digest: lastDigest(p.stdout) };
  })();
  const { digest } = await pushed;
  // Two layers and the config: each checked with HEAD, then POST + PUT.
  const reqs = await reg.requestsSince(offset);
  const uploads = blobUploads(reqs);
  assert.equal(uploads.filter((r) => r.method === 'POST').length, 3, JSON.stringify(reqs));
  assert.equal(uploads.filter((r) => r.method === 'PUT' && r.path.includes('digest=sha256')).length, 3);
  assert.equal(reqs.filter((r) => r.method === 'HEAD' && r.status === 404).length, 3);
  assert.ok(reqs.some((r) => r.method === 'PUT' && r.path === '/v2/thoward/scooby_snacks/manifests/latest' && r.status === 201));

  const info = await skopeoJson(['inspect', '--tls-verify=false', `docker://${ref}`]);
  assert.equal(info['Digest'], digest);
  assert.equal((info['Layers'] as string[]).length, 2);
  const cfg = await skopeoJson(['inspect', '--config', '--tls-verify=false', `docker://${ref}`]) as { config: { Cmd: string[] }; rootfs: { diff_ids: string[] }; history: Array<{ created_by?: string }> };
  assert.deepEqual(cfg.config.Cmd, ['sh']);
  assert.equal(cfg.history[cfg.history.length - 1]!.created_by, '/bin/sh -c touch scooby_snacks.txt');
  assert.deepEqual(cfg.rootfs.diff_ids, ((await inspect(root, ref))['RootFS'] as { Layers: string[] }).Layers);

  const { rootfs } = await unpackWithUmoci(ref);
  assert.ok((await fs.stat(path.join(rootfs, 'scooby_snacks.txt'))).isFile());
  assert.ok((await fs.stat(path.join(rootfs, 'bin', 'busybox'))).isFile());
  assert.equal(await fs.readlink(path.join(rootfs, 'bin', 'sh')), '/bin/busybox');

  const offset2 = await reg.logOffset();
  const again = await sw(root, ['push', ref]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout.split('\n').filter((l) => l.endsWith(': Layer already exists')).length, 2, again.stdout);
  assert.equal(lastDigest(again.stdout), digest);
  assert.deepEqual(blobUploads(await reg.requestsSince(offset2)), [], 'a second push uploads no blob');

  const s = await sw(root, ['search', `${reg.host}/scooby`]);
  assert.equal(s.code, 0, s.stderr);
  assert.match(s.stdout, /^NAME\s+DESCRIPTION\s+STARS\s+OFFICIAL\s+TRUSTED\n/);
  assert.match(s.stdout, new RegExp(`^${reg.host.replace(/\./g, '\\.')}/thoward/scooby_snacks\\s+0$`, 'm'));
});

test('push refuses a root repository on the default index, and an image that does not exist', async () => {
  const root = await seedRoot();
  assert.equal((await sw(root, ['tag', `${reg.host}/thoward/scooby_snacks`, 'scooby_snacks'])).code, 0);
  const r = await sw(root, ['push', 'scooby_snacks']);
  assert.equal(r.code, 1);
  assert.equal(r.stderr, 'Impossible to push a "root" repository. Please rename your repository in <user>/<repo> (ex: thoward/scooby_snacks)\n');
  const missing = await sw(root, ['push', `${reg.host}/thoward/nothing_here`]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /An image does not exist locally with the tag: 127\.0\.0\.1:\d+\/thoward\/nothing_here/);
});

test('whiteouts: deleted files and a replaced folder come out right through skopeo/umoci and through pull', async () => {
  const root = await seedRoot();
  const ref = `${reg.host}/thoward/whiteouts`;
  const b = await sw(root, ['build', '-t', ref, await makeContext({ Dockerfile: WHITEOUTS })]);
  assert.equal(b.code, 0, b.stderr);
  const p = await sw(root, ['push', ref]);
  assert.equal(p.code, 0, p.stderr);
  // The busybox layer is known from the seed's push: mounted, not uploaded again.
  assert.match(p.stdout, /: Mounted from thoward\/scooby_snacks\n/);

  const { rootfs, layout } = await unpackWithUmoci(ref);
  assert.deepEqual(await fs.readdir(path.join(rootfs, 'data')), ['new']);
  await assert.rejects(fs.lstat(path.join(rootfs, 'bin', 'vi')));
  await assert.rejects(fs.lstat(path.join(rootfs, 'etc', 'group')));
  assert.equal(await fs.readFile(path.join(rootfs, 'etc', 'motd'), 'utf8'), 'hi\n');
  assert.ok((await fs.stat(path.join(rootfs, 'etc', 'passwd'))).isFile());
  // The top layer carries OCI whiteouts.
  const index = JSON.parse(await fs.readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const blob = (d: string) => path.join(layout, 'blobs', 'sha256', d.slice(7));
  const manifest = JSON.parse(await fs.readFile(blob(index.manifests[0]!.digest), 'utf8')) as { layers: Array<{ digest: string }> };
  const entries = (await exec('tar', ['tzf', blob(manifest.layers[manifest.layers.length - 1]!.digest)])).stdout.split('\n');
  for (const e of ['bin/.wh.vi', 'etc/.wh.group', 'data/.wh..wh..opq', 'data/new']) assert.ok(entries.includes(e), `${e} in ${entries.join(' ')}`);

  const fresh = await freshRoot();
  const pull = await sw(fresh, ['pull', ref]);
  assert.equal(pull.code, 0, pull.stderr);
  const run = await sw(fresh, ['run', ref, 'sh', '-c', 'ls -A /data; test ! -e /bin/vi && test ! -e /etc/group && cat /etc/motd']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'new\nhi\n');
});

test('pull into a fresh root: the same config and files layer by layer; nothing fetched twice; FROM builds; a re-push mounts and matches', async () => {
  const root = await seedRoot();
  const { ref, digest } = await pushedSeed();
  const fresh = await freshRoot();
  const offset = await reg.logOffset();
  const p = await sw(fresh, ['pull', ref]);
  assert.equal(p.code, 0, p.stderr);
  const lines = p.stdout.trimEnd().split('\n');
  assert.equal(lines[0], 'latest: Pulling from thoward/scooby_snacks');
  assert.equal(lines.filter((l) => l.endsWith(': Pull complete')).length, 2, p.stdout);
  assert.ok(lines.includes(`Digest: ${digest}`));
  assert.ok(lines.includes(`Status: Downloaded newer image for ${ref}:latest`));
  assert.equal(lines[lines.length - 1], `${ref}:latest`);
  const gets = (await reg.requestsSince(offset)).filter((r) => r.method === 'GET' && r.path.includes('/blobs/'));
  assert.equal(gets.length, 3, 'two layers and the config');

  const images = await sw(fresh, ['images']);
  assert.match(images.stdout, new RegExp(`^${ref.replace(/\./g, '\\.')}\\s+latest\\s+[0-9a-f]{12}\\s`, 'm'));
  const [a, b] = [await inspect(root, ref), await inspect(fresh, ref)];
  for (const k of ['Config', 'RootFS', 'Architecture', 'Os']) assert.deepEqual(b[k], a[k], k);
  const [origLayers, pulledLayers] = [await layerDirs(root, ref), await layerDirs(fresh, ref)];
  assert.equal(pulledLayers.length, 2);
  assert.equal(origLayers.length, pulledLayers.length);
  for (let i = 0; i < origLayers.length; i++) assert.deepEqual(await snapshotTree(pulledLayers[i]!), await snapshotTree(origLayers[i]!), `layer ${i}`);

  const offset2 = await reg.logOffset();
  const again = await sw(fresh, ['pull', ref]);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout.split('\n').filter((l) => l.endsWith(': Already exists')).length, 2, again.stdout);
  assert.match(again.stdout, /Status: Image is up to date for /);
  // Only the config is read again (it names the chain); no layer is downloaded twice.
  const raw = await skopeoJson(['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]) as { config: { digest: string } };
  const blobGets = (await reg.requestsSince(offset2)).filter((r) => r.path.includes('/blobs/sha256:') && r.method === 'GET');
  assert.deepEqual(blobGets.map((r) => r.path), [`/v2/thoward/scooby_snacks/blobs/${raw.config.digest}`]);

  const build = await sw(fresh, ['build', '-t', 'onpulled', await makeContext({ Dockerfile: `FROM ${ref}\nRUN test -f /scooby_snacks.txt && touch /more\n` })]);
  assert.equal(build.code, 0, build.stderr + build.stdout);

  // The pulled image, pushed elsewhere on the same registry: layers mounted, the same manifest.
  const copy = `${reg.host}/other/copy`;
  assert.equal((await sw(fresh, ['tag', ref, copy])).code, 0);
  const re = await sw(fresh, ['push', copy]);
  assert.equal(re.code, 0, re.stderr);
  assert.equal(re.stdout.split('\n').filter((l) => l.endsWith(': Mounted from thoward/scooby_snacks')).length, 2, re.stdout);
  assert.equal(lastDigest(re.stdout), digest, 'same config and layers give the same manifest digest');
});

/** A manifest's bytes from the registry (for building a manifest list). */
async function manifestOf(repo: string, tag: string): Promise<{ digest: string; size: number; mediaType: string }> {
  const res = await fetch(`http://${reg.host}/v2/${repo}/manifests/${tag}`, { headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json' } });
  assert.equal(res.status, 200);
  const bytes = Buffer.from(await res.arrayBuffer());
  return { digest: res.headers.get('docker-content-digest')!, size: bytes.length, mediaType: res.headers.get('content-type')! };
}

test('pull: an OCI image made by umoci and pushed by skopeo, by tag and by digest; a manifest list picks linux/amd64', async () => {
  const dir = await tmpDir('oci-src');
  const layout = path.join(dir, 'layout');
  const bundle = path.join(dir, 'bundle');
  await exec('umoci', ['init', '--layout', layout]);
  await exec('umoci', ['new', '--image', `${layout}:v1`]);
  await exec('umoci', ['unpack', '--image', `${layout}:v1`, bundle]);
  await fs.writeFile(path.join(bundle, 'rootfs', 'hello.txt'), 'hello from umoci\n');
  await exec('umoci', ['repack', '--image', `${layout}:v1`, bundle]);
  const ref = `${reg.host}/umoci/hello`;
  await exec('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${ref}:v1`]);
  // umoci's manifest has no mediaType field: the registry's Content-Type tells what it is.
  const raw = await skopeoJson(['inspect', '--raw', '--tls-verify=false', `docker://${ref}:v1`]) as { mediaType?: string; config: { mediaType: string } };
  assert.equal(raw.mediaType, undefined);
  assert.equal(raw.config.mediaType, 'application/vnd.oci.image.config.v1+json');

  const fresh = await freshRoot();
  const p = await sw(fresh, ['pull', `${ref}:v1`]);
  assert.equal(p.code, 0, p.stderr);
  const [layer] = await layerDirs(fresh, `${ref}:v1`);
  assert.equal(await fs.readFile(path.join(layer!, 'hello.txt'), 'utf8'), 'hello from umoci\n');

  const { digest } = await manifestOf('umoci/hello', 'v1');
  const byDigest = await freshRoot();
  const d = await sw(byDigest, ['pull', `${ref}@${digest}`]);
  assert.equal(d.code, 0, d.stderr);
  assert.equal(d.stdout.trimEnd().split('\n').pop(), `${ref}@${digest}`);
  assert.match((await sw(byDigest, ['images'])).stdout, /^<none>\s+<none>\s+[0-9a-f]{12}/m);

  // A list whose first entry is arm64 (the whiteouts image) and second amd64 (the seed).
  const { ref: seedRef } = await pushedSeed();
  const root = await seedRoot();
  if ((await sw(root, ['images', '-q', `${reg.host}/thoward/whiteouts`])).stdout === '') {
    assert.equal((await sw(root, ['build', '-t', `${reg.host}/thoward/whiteouts`, await makeContext({ Dockerfile: WHITEOUTS })])).code, 0);
  }
  assert.equal((await sw(root, ['tag', `${reg.host}/thoward/whiteouts`, `${seedRef}:arm`])).code, 0);
  assert.equal((await sw(root, ['push', `${seedRef}:arm`])).code, 0);
  const arm = await manifestOf('thoward/scooby_snacks', 'arm');
  const amd = await manifestOf('thoward/scooby_snacks', 'latest');
  const list = {
    schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json',
    manifests: [
      { mediaType: arm.mediaType, digest: arm.digest, size: arm.size, platform: { architecture: 'arm64', os: 'linux', variant: 'v8' } },
      { mediaType: amd.mediaType, digest: amd.digest, size: amd.size, platform: { architecture: 'amd64', os: 'linux' } },
    ],
  };
  const put = await fetch(`http://${reg.host}/v2/thoward/scooby_snacks/manifests/multi`, { method: 'PUT', headers: { 'Content-Type': list.mediaType }, body: JSON.stringify(list) });
  assert.equal(put.status, 201, await put.text());
  const multi = await freshRoot();
  const m = await sw(multi, ['pull', `${seedRef}:multi`]);
  assert.equal(m.code, 0, m.stderr);
  const run = await sw(multi, ['run', `${seedRef}:multi`, 'ls', '/scooby_snacks.txt']);
  assert.equal(run.code, 0, `the amd64 entry (the seed) was pulled: ${run.stderr}`);
});

test('pushImage: OCI manifests, PATCH chunks for large blobs, and a progress callback (the Engine API entry point)', async () => {
  const root = await storeWithBusybox();
  temps.push(root);
  const ref = `${reg.host}/api/busybox:1`;
  assert.equal((await sw(root, ['tag', 'busybox', ref])).code, 0);
  const events: RegistryProgress[] = [];
  const offset = await reg.logOffset();
  const [result] = await pushImage({ layout: new StoreLayout(root), ref, format: 'oci', chunkSize: 256 * 1024, onProgress: (e) => events.push(e) });
  const reqs = await reg.requestsSince(offset);
  // The busybox layer is ~1 MB gzipped: mounted from nowhere (a fresh store knows no blob), so sent in chunks.
  assert.ok(reqs.filter((r) => r.method === 'PATCH' && r.status === 202).length >= 4, JSON.stringify(reqs));
  assert.ok(events.some((e) => e.status === 'Pushing' && (e.progressDetail?.current ?? 0) > 0 && e.progressDetail?.total !== undefined));
  assert.deepEqual(events.filter((e) => e.id !== undefined).map((e) => e.status).filter((s, i, a) => a.indexOf(s) === i), ['Preparing', 'Pushing', 'Pushed']);
  const aux = events.find((e) => e.aux)?.aux;
  assert.deepEqual(aux, { Tag: '1', Digest: result!.digest, Size: result!.size });
  const raw = await skopeoJson(['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]) as { mediaType: string; config: { mediaType: string }; layers: Array<{ mediaType: string }> };
  assert.equal(raw.mediaType, 'application/vnd.oci.image.manifest.v1+json');
  assert.equal(raw.config.mediaType, 'application/vnd.oci.image.config.v1+json');
  assert.deepEqual(raw.layers.map((l) => l.mediaType), ['application/vnd.oci.image.layer.v1.tar+gzip']);
});

test('save --format oci, export-oci and load: skopeo and umoci read them, and they load back', async () => {
  const root = await seedRoot();
  const ref = `${reg.host}/thoward/scooby_snacks`;
  const dir = await tmpDir('oci-out');
  const tar = path.join(dir, 'scooby.tar');
  const s = await sw(root, ['save', '--format', 'oci', '-o', tar, ref]);
  assert.equal(s.code, 0, s.stderr);
  const diffIds = ((await inspect(root, ref))['RootFS'] as { Layers: string[] }).Layers;
  const info = await skopeoJson(['inspect', `oci-archive:${tar}`]);
  assert.deepEqual(info['Layers'], diffIds, 'uncompressed layers, named by their diff ids');

  const layoutDir = path.join(dir, 'layout');
  const e = await sw(root, ['export-oci', ref, layoutDir]);
  assert.equal(e.code, 0, e.stderr);
  await exec('umoci', ['unpack', '--image', `${layoutDir}:latest`, path.join(dir, 'bundle')]);
  assert.ok((await fs.stat(path.join(dir, 'bundle', 'rootfs', 'scooby_snacks.txt'))).isFile());
  assert.ok((await fs.stat(path.join(dir, 'bundle', 'rootfs', 'bin', 'busybox'))).isFile());

  // The docker-save view of the same tar (manifest.json) ...
  const a = await freshRoot();
  const la = await sw(a, ['load', '-i', tar]);
  assert.equal(la.stdout, `Loaded image: ${ref}:latest\n`, la.stderr);
  // ... and an OCI-only layout (no manifest.json): the exported folder, tarred.
  const ociOnly = path.join(dir, 'oci-only.tar');
  await exec('tar', ['-C', layoutDir, '-cf', ociOnly, '.']);
  const b = await freshRoot();
  const lb = await sw(b, ['load', '-i', ociOnly]);
  assert.equal(lb.stdout, `Loaded image: ${ref}:latest\n`, lb.stderr);
  for (const r of [a, b]) assert.deepEqual(((await inspect(r, ref))['RootFS'] as { Layers: string[] }).Layers, diffIds);
  const run = await sw(b, ['run', ref, 'ls', '/scooby_snacks.txt']);
  assert.equal(run.code, 0, run.stderr);
  // A layout whose entries carry only a bare tag loads untagged.
  const { layout } = await unpackWithUmoci(ref);
  const bare = path.join(dir, 'bare.tar');
  await exec('tar', ['-C', layout, '-cf', bare, '.']);
  const c = await freshRoot();
  assert.match((await sw(c, ['load', '-i', bare])).stdout, /^Loaded image ID: sha256:[0-9a-f]{64}\n$/);
});

test('a registry behind htpasswd: push fails clearly without login, works after login; logout forgets', async () => {
  const authReg = await startRegistry({ htpasswd: { user: 'thoward', password: 's3cret' } });
  try {
    const root = await seedRoot();
    const cfg = await tmpDir('auth-config');
    const ref = `${authReg.host}/thoward/scooby_snacks`;
    assert.equal((await sw(root, ['tag', `${reg.host}/thoward/scooby_snacks`, ref])).code, 0);
    const denied = await sw(root, ['push', ref], { config: cfg });
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /unauthorized: authentication required/);
    assert.ok(denied.stderr.includes(`slipway login ${authReg.host}`), denied.stderr);

    const bad = await sw(root, ['login', '-u', 'thoward', '--password-stdin', authReg.host], { config: cfg, input: 'wrong\n' });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, new RegExp(`login to ${authReg.host.replace(/\./g, '\\.')} failed: unauthorized`));
    await assert.rejects(fs.stat(path.join(cfg, 'auth.json')));

    const good = await sw(root, ['login', '-u', 'thoward', '--password-stdin', authReg.host], { config: cfg, input: 's3cret\n' });
    assert.equal(good.code, 0, good.stderr);
    assert.equal(good.stdout, 'Login Succeeded\n');
    const st = await fs.stat(path.join(cfg, 'auth.json'));
    assert.equal(st.mode & 0o777, 0o600);
    const file = JSON.parse(await fs.readFile(path.join(cfg, 'auth.json'), 'utf8')) as { auths: Record<string, { auth: string }> };
    assert.equal(Buffer.from(file.auths[authReg.host]!.auth, 'base64').toString(), 'thoward:s3cret');

    const p = await sw(root, ['push', ref], { config: cfg });
    assert.equal(p.code, 0, p.stderr);
    // Again: both layers are HEADed at once, and both meet the 401 challenge together.
    const p2 = await sw(root, ['push', ref], { config: cfg });
    assert.equal(p2.code, 0, p2.stderr);
    assert.equal(p2.stdout.split('\n').filter((l) => l.endsWith(': Layer already exists')).length, 2, p2.stdout);
    const fresh = await freshRoot();
    const pull = await sw(fresh, ['pull', ref], { config: cfg });
    assert.equal(pull.code, 0, pull.stderr);
    const anonymous = await sw(await freshRoot(), ['pull', ref], { config: await tmpDir('empty-config') });
    assert.equal(anonymous.code, 1);
    assert.match(anonymous.stderr, /pull access denied for .*may require 'slipway login'/);

    const out = await sw(root, ['logout', authReg.host], { config: cfg });
    assert.equal(out.stdout, `Removing login credentials for ${authReg.host}\n`);
    assert.equal(JSON.parse(await fs.readFile(path.join(cfg, 'auth.json'), 'utf8')).auths[authReg.host], undefined);
    assert.equal((await sw(root, ['push', ref], { config: cfg })).code, 1);
  } finally {
    await authReg.stop();
  }
});

test('bearer tokens (Docker\'s token flow, through a token proxy): login, push, pull and catalog search with scoped tokens', async () => {
  const proxy = await startTokenProxy(reg.host, { user: 'bearer', password: 'pw' });
  try {
    const root = await seedRoot();
    const cfg = await tmpDir('bearer-config');
    const ref = `${proxy.host}/bearer/scooby`;
    assert.equal((await sw(root, ['tag', `${reg.host}/thoward/scooby_snacks`, ref])).code, 0);
    const denied = await sw(root, ['push', ref], { config: cfg });
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /unauthorized/);

    const login = await sw(root, ['login', '-u', 'bearer', '--password-stdin', proxy.host], { config: cfg, input: 'pw\n' });
    assert.equal(login.code, 0, login.stderr);
    const p = await sw(root, ['push', ref], { config: cfg });
    assert.equal(p.code, 0, p.stderr);
    assert.ok(proxy.tokenRequests.some((t) => t.granted && t.scopes.includes('repository:bearer/scooby:pull,push')), JSON.stringify(proxy.tokenRequests));
    assert.ok(proxy.forwarded.some((f) => f.startsWith('PUT /v2/bearer/scooby/manifests/latest')));

    const fresh = await freshRoot();
    const pull = await sw(fresh, ['pull', ref], { config: cfg });
    assert.equal(pull.code, 0, pull.stderr);
    const s = await sw(root, ['search', `${proxy.host}/scoob`], { config: cfg });
    assert.equal(s.code, 0, s.stderr);
    assert.ok(s.stdout.includes(`${proxy.host}/bearer/scooby `), s.stdout);
    assert.ok(proxy.tokenRequests.some((t) => t.scopes.includes('registry:catalog:*')));
  } finally {
    await proxy.stop();
  }
});

test('a registry that serves a corrupt blob: pull fails on the digest and leaves the store without image or tag', async () => {
  const proxy = await startTokenProxy(reg.host, { user: 'u', password: 'p' });
  try {
    const { ref: seedRef } = await pushedSeed();
    const cfg = await tmpDir('corrupt-config');
    assert.equal((await sw(await seedRoot(), ['login', '-u', 'u', '--password-stdin', proxy.host], { config: cfg, input: 'p' })).code, 0);
    const info = await skopeoJson(['inspect', '--tls-verify=false', `docker://${seedRef}`]);
    proxy.corrupt.add((info['Layers'] as string[])[1]!);
    const fresh = await freshRoot();
    const ref = `${proxy.host}/thoward/scooby_snacks`;
    const p = await sw(fresh, ['pull', ref], { config: cfg });
    assert.equal(p.code, 1);
    assert.match(p.stderr, /digest mismatch/);
    assert.deepEqual(await fs.readdir(path.join(fresh, 'graph')), ['_tmp']);
    assert.deepEqual(await fs.readdir(path.join(fresh, 'graph', '_tmp')), []);
    await assert.rejects(fs.stat(path.join(fresh, 'repositories')));
  } finally {
    await proxy.stop();
  }
});

test('references normalize as Docker\'s do; manifests, platforms and X-Registry-Auth parse strictly', () => {
  const table: Array<[string, Partial<ReturnType<typeof parseRemoteReference>>]> = [
    ['busybox', { registry: 'docker.io', path: 'library/busybox', tag: 'latest', localName: 'busybox', root: true }],
    ['docker.io/library/busybox:1.36', { registry: 'docker.io', path: 'library/busybox', tag: '1.36', localName: 'busybox', root: false }],
    ['thoward/scooby_snacks', { registry: 'docker.io', path: 'thoward/scooby_snacks', localName: 'thoward/scooby_snacks', root: false }],
    ['127.0.0.1:5000/thoward/scooby_snacks', { registry: '127.0.0.1:5000', path: 'thoward/scooby_snacks', tag: 'latest', localName: '127.0.0.1:5000/thoward/scooby_snacks' }],
    ['localhost/a/b:v2', { registry: 'localhost', path: 'a/b', tag: 'v2' }],
    [`reg.example.com/x@sha256:${'a'.repeat(64)}`, { registry: 'reg.example.com', path: 'x', tag: undefined, digest: `sha256:${'a'.repeat(64)}` }],
  ];
  for (const [ref, want] of table) {
    const got = parseRemoteReference(ref);
    for (const [k, v] of Object.entries(want)) assert.deepEqual(got[k as keyof typeof got], v, `${ref} ${k}`);
  }
  for (const bad of ['UPPER/case', 'a/b@sha256:abc', 'a/b@md5:' + '0'.repeat(32), '']) assert.throws(() => parseRemoteReference(bad), /invalid reference format/, bad);

  const layer = { mediaType: MEDIA.dockerLayerGzip, digest: `sha256:${'1'.repeat(64)}`, size: 3 };
  const config = { mediaType: MEDIA.dockerConfig, digest: `sha256:${'2'.repeat(64)}`, size: 2 };
  const ok = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.dockerManifest, config, layers: [layer] }));
  assert.equal(parseManifest(ok).kind, 'image');
  const hostile = [
    { schemaVersion: 2, mediaType: MEDIA.dockerManifest, config, layers: [{ ...layer, digest: 'sha256:../../../etc/passwd' }] },
    { schemaVersion: 2, mediaType: MEDIA.dockerManifest, config, layers: [{ ...layer, size: -1 }] },
    { schemaVersion: 1, name: 'x', fsLayers: [] },
    { schemaVersion: 2, mediaType: 'application/x-unknown', config, layers: [] },
  ];
  for (const h of hostile) assert.throws(() => parseManifest(Buffer.from(JSON.stringify(h))), /manifest/, JSON.stringify(h));
  const index = { schemaVersion: 2 as const, manifests: [
    { mediaType: MEDIA.ociManifest, digest: `sha256:${'3'.repeat(64)}`, size: 1, platform: { os: 'linux', architecture: 'arm64' } },
    { mediaType: MEDIA.ociManifest, digest: `sha256:${'4'.repeat(64)}`, size: 1, platform: { os: 'linux', architecture: 'amd64' } },
  ] };
  assert.equal(selectManifest(index).digest, `sha256:${'4'.repeat(64)}`);
  assert.throws(() => selectManifest(index, { os: 'windows', architecture: 'amd64' }), /no matching manifest for windows\/amd64/);

  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  assert.deepEqual(credentialsFromRegistryAuth(b64({ username: 'u', password: 'p:w', serveraddress: 'h' })), { username: 'u', password: 'p:w' });
  assert.deepEqual(credentialsFromRegistryAuth(b64({ identitytoken: 't' })), { identityToken: 't' });
  assert.equal(credentialsFromRegistryAuth('e30='), undefined);
  assert.equal(credentialsFromRegistryAuth('%%%'), undefined);
});

test('a hostile registry: an oversized manifest and a lying Docker-Content-Digest are refused before anything is stored', async () => {
  let mode: 'huge' | 'lie' = 'huge';
  const server = http.createServer((req, res) => {
    if (req.url === '/v2/') return res.end('{}');
    if (mode === 'huge') {
      res.writeHead(200, { 'Content-Type': MEDIA.dockerManifest });
      res.end(Buffer.alloc(5 * 1024 * 1024, 0x20));
      return;
    }
    const body = JSON.stringify({ schemaVersion: 2, mediaType: MEDIA.dockerManifest, config: { mediaType: MEDIA.dockerConfig, digest: `sha256:${'2'.repeat(64)}`, size: 2 }, layers: [] });
    res.writeHead(200, { 'Content-Type': MEDIA.dockerManifest, 'Docker-Content-Digest': `sha256:${'9'.repeat(64)}` });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const host = `127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    const root = await freshRoot();
    const layout = new StoreLayout(root);
    await assert.rejects(pullImage({ layout, ref: `${host}/evil/image:1` }), /too large/);
    mode = 'lie';
    await assert.rejects(pullImage({ layout, ref: `${host}/evil/image:1` }), /does not match the content/);
    assert.deepEqual(await fs.readdir(path.join(root, 'graph', '_tmp')), []);
    await assert.rejects(fs.stat(path.join(root, 'repositories')));
  } finally {
    await new Promise((r) => server.close(r));
  }
});
