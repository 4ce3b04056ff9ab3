/**
 * Test helper: `docker save`-shaped archives that try to make `load` read a file outside the
 * archive (a `..` path, an absolute path, a link out), plus valid ones built the same way.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { makeTar, type Spec } from './tar.js';

/** A layer tar holding one file, and the config document naming it. */
export async function secretLayer(text = 'TOP SECRET\n'): Promise<{ layer: Buffer; config: Buffer; diffId: string }> {
  const layer = await makeTar([{ name: 'secret.txt', body: text }]);
  const diffId = `sha256:${crypto.createHash('sha256').update(layer).digest('hex')}`;
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux', created: '2020-01-01T00:00:00Z', config: { Cmd: ['sh'] },
    rootfs: { type: 'layers', diff_ids: [diffId] }, history: [{ created: '2020-01-01T00:00:00Z', created_by: 'ADD secret' }],
  }));
  return { layer, config, diffId };
}

/**
 * Writes a valid layer and config into `<root>/secret/` (outside any archive): the files a
 * hostile archive tries to reach. `load` extracts into `<root>/graph/_tmp/<scratch>/x/`, so a
 * naive join of `../../../../secret/...` would find them.
 */
export async function plantSecret(root: string): Promise<{ rel: string; abs: string }> {
  const { layer, config } = await secretLayer();
  const dir = path.join(root, 'secret');
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, 'layer.tar'), layer);
  await fs.writeFile(path.join(dir, 'config.json'), config);
  return { rel: '../../../../secret', abs: dir };
}

function manifest(config: string, layers: string[], tags: string[] | null = ['stolen:latest']): Spec {
  return { name: 'manifest.json', body: JSON.stringify([{ Config: config, RepoTags: tags, Layers: layers }]) };
}

/** [what it tries, archive] for archives that must be refused, each naming a file outside the archive. */
export async function hostileArchives(secret: { rel: string; abs: string }): Promise<Array<[string, Buffer]>> {
  const { layer, config } = await secretLayer();
  const inArchive: Spec[] = [{ name: 'c.json', body: config.toString() }, { name: 'l/layer.tar', body: layer }];
  const sym = (name: string, linkname: string): Spec => ({ name, type: 'symlink', linkname, mode: 0o120777 });
  return [
    ['layer path with ..', await makeTar([...inArchive, manifest('c.json', [`${secret.rel}/layer.tar`])])],
    ['config path with ..', await makeTar([...inArchive, manifest(`${secret.rel}/config.json`, ['l/layer.tar'])])],
    ['.. inside the archive name', await makeTar([...inArchive, manifest('c.json', ['l/../l/layer.tar'])])],
    ['absolute layer path', await makeTar([...inArchive, manifest('c.json', [`${secret.abs}/layer.tar`])])],
    ['absolute config path', await makeTar([...inArchive, manifest(`${secret.abs}/config.json`, ['l/layer.tar'])])],
    ['/etc/passwd as config', await makeTar([...inArchive, manifest('/etc/passwd', ['l/layer.tar'])])],
    ['layer through a symlink out (relative)', await makeTar([{ name: 'c.json', body: config.toString() }, sym('l', `${secret.rel}/..`), manifest('c.json', ['l/secret/layer.tar'])])],
    ['layer through a symlink out (absolute)', await makeTar([{ name: 'c.json', body: config.toString() }, sym('x.tar', `${secret.abs}/layer.tar`), manifest('c.json', ['x.tar'])])],
    ['config through a symlinked folder', await makeTar([...inArchive, sym('d', '/'), manifest(`d${secret.abs}/config.json`, ['l/layer.tar'])])],
    ['a link chain out', await makeTar([...inArchive, sym('a', 'b'), sym('b', '../../../..'), manifest('c.json', ['a/secret/layer.tar'])])],
    ['a link loop', await makeTar([...inArchive, sym('a', 'b'), sym('b', 'a'), manifest('c.json', ['a/layer.tar'])])],
    ['a hard link out', await makeTar([...inArchive, { name: 'h.tar', type: 'link', linkname: `${secret.abs}/layer.tar` }, manifest('c.json', ['h.tar'])])],
    ['Layers not a list', await makeTar([...inArchive, { name: 'manifest.json', body: JSON.stringify([{ Config: 'c.json', Layers: null }]) }])],
    ['Config not a string', await makeTar([...inArchive, { name: 'manifest.json', body: JSON.stringify([{ Config: { $ne: 1 }, Layers: ['l/layer.tar'] }]) }])],
    ['legacy layout naming ..', await makeTar([{ name: 'repositories', body: JSON.stringify({ stolen: { latest: '../../../../secret' } }) }, { name: 'abc/json', body: '{"id":"abc","parent":"../../x"}' }])],
    ['OCI blob linked out', await makeTar([{ name: 'oci-layout', body: '{"imageLayoutVersion":"1.0.0"}' }, sym('blobs', secret.abs), { name: 'index.json', body: JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 10 }] }) }])],
  ];
}

/** A valid archive whose layer is reached through an in-archive symlink (older `docker save` shares layers so). */
export async function linkedLayerArchive(): Promise<Buffer> {
  const { layer, config } = await secretLayer('not secret\n');
  return makeTar([
    { name: 'c.json', body: config.toString() }, { name: 'a/layer.tar', body: layer },
    { name: 'b', type: 'symlink', linkname: 'a', mode: 0o120777 }, manifest('c.json', ['b/layer.tar'], ['linked:latest']),
  ]);
}
