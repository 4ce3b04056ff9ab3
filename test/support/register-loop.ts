/**
 * Test helper process: registers images and tags in a loop until killed. The store test kills
 * it with SIGKILL at an arbitrary moment and then checks that nothing half-written is visible.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { StoreLayout, type ImageId } from '../../src/store/layout.js';
import { ensureStore, makeTmpDir, registerImage } from '../../src/store/graph.js';
import { updateRepositories } from '../../src/store/repositories.js';
import { emptyContainerConfig } from '../../src/image-config.js';

const layout = new StoreLayout(process.argv[2]!);
await ensureStore(layout);
process.stdout.write('ready\n');
for (let i = 0; ; i++) {
  const dir = path.join(await makeTmpDir(layout, 'loop'), 'layer');
  await fs.mkdir(dir);
  for (let f = 0; f < 200; f++) await fs.writeFile(path.join(dir, `f${f}`), crypto.randomBytes(512));
  const id = crypto.randomBytes(32).toString('hex') as ImageId;
  await registerImage(layout, {
    id, layerDir: dir, diffId: `sha256:${id}`, layerSize: 200 * 512,
    json: { id, created: new Date().toISOString(), container_config: emptyContainerConfig(), docker_version: 'x', config: emptyContainerConfig(), architecture: 'amd64', os: 'linux', Size: 0 },
  });
  await updateRepositories(layout, (r) => { (r.Repositories['loop'] ??= {})[`t${i}`] = id; });
}
