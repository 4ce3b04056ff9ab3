import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { digestSources } from '../../src/cache/context-digest.js';
import { CORPUS_DIR } from '../support/conformance.js';

/** A copy of a recorded case's context with the modes run.sh gives it (0644 files, 0755 folders). */
function recordedContext(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-digest-'));
  fs.cpSync(path.join(CORPUS_DIR, 'cases', name, 'context'), dir, { recursive: true });
  const walk = (d: string): void => {
    fs.chmodSync(d, 0o755);
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name));
      else fs.chmodSync(path.join(d, e.name), 0o644);
    }
  };
  walk(dir);
  return dir;
}

test('a source folder hashes as the daemon looks it up: `dir/`, `./dir` and `dir/.` are `dir` (Docker\'s recorded hash)', async (t) => {
  const ctx = recordedContext('copy-basic');
  t.after(() => fs.rmSync(ctx, { recursive: true, force: true }));
  // Docker 20.10.24 recorded the same hash for `COPY dir /copied-dir` and `COPY dir/ /copied-dir-slash/`.
  const docker = 'dir:6e83b2bb5bbe034c8cc8b17110e85bd6a7861e95d71dde1733eb7c92d5bdf3bc';
  for (const rel of ['dir', 'dir/', './dir', 'dir/.', 'dir//']) {
    const d = await digestSources([{ rel, abs: path.join(ctx, 'dir') }], () => false, {});
    assert.equal(d.legacyHash, docker, rel);
  }
  // Below such a source, ignored paths are named as the context names them (`dir/one.txt`).
  const ignored = await digestSources([{ rel: 'dir/', abs: path.join(ctx, 'dir') }], (r) => r === 'dir/one.txt', {});
  assert.deepEqual(ignored.entries[0]!.map((e) => e.path).sort(), ['.', 'nested', 'nested/two.txt']);
});
