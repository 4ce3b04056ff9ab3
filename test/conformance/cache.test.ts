import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import {
  baseRootfsTar, CORPUS_DIR, compareRounds, corpusFolders, readJson, runSequence, SlipwayCli, type RoundJson,
} from '../support/conformance.js';

const scratch = await mkdtemp(join(tmpdir(), 'slipway-conformance-cache-'));

after(async () => {
  if (process.env['SLIPWAY_CONFORMANCE_KEEP'] === '1') console.log(`conformance scratch kept in ${scratch}`);
  else await rm(scratch, { recursive: true, force: true });
});

const folders = await corpusFolders('cache');
// an empty list would pass silently: a corpus that cannot be found is an error
if (folders.length === 0) throw new Error(`no conformance cache sequences under ${CORPUS_DIR}`);

for (const dir of folders) {
  const name = basename(dir);
  test(`cache/${name}`, async () => {
    const expected = await readJson<RoundJson[]>(join(dir, 'sequence.json'));
    const work = join(scratch, name);
    await mkdir(work, { recursive: true });
    // every sequence starts from an empty cache: its own store root
    const cli = new SlipwayCli(join(work, 'root'));
    const rounds = await runSequence(dir, cli, work, await baseRootfsTar());
    const diffs = compareRounds(expected, rounds);
    assert.ok(diffs.length === 0, `cache/${name} differs from Docker:\n  ${diffs.join('\n  ')}`);
    // build --plan agrees with the build that follows on every step of every round.
    rounds.forEach((r, i) => assert.deepEqual(r.planned, r.cached, `cache/${name} round ${i + 1}: --plan predicted ${JSON.stringify(r.planned)}, the build did ${JSON.stringify(r.cached)}`));
  });
}
