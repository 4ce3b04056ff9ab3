import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import {
  baseRootfsTar, CORPUS_DIR, buildCase, compareCase, corpusFolders, readJson, storeState, SlipwayCli, type ExpectedJson,
} from '../support/conformance.js';

// Cases whose error Docker reports before the build changes anything (a parse or plan-time
// error): Slipway must leave the store exactly as it was.
const STORE_UNCHANGED = new Set(['fail-unknown-instruction', 'fail-instruction-before-from', 'fail-bad-substitution', 'fail-unknown-stage']);

// One store root for every case of this run, as the corpus prescribes.
let scratch = '';
let cli: SlipwayCli;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'slipway-conformance-'));
  cli = new SlipwayCli(join(scratch, 'root'));
  await cli.importBase(await baseRootfsTar(), join(scratch, 'import.out'));
});

after(async () => {
  if (process.env['SLIPWAY_CONFORMANCE_KEEP'] === '1') console.log(`conformance scratch kept in ${scratch}`);
  else if (scratch) await rm(scratch, { recursive: true, force: true });
});

const folders = await corpusFolders('cases');
// an empty list would pass silently: a corpus that cannot be found is an error
if (folders.length === 0) throw new Error(`no conformance cases under ${CORPUS_DIR}`);

for (const dir of folders) {
  const name = basename(dir);
  test(name, async () => {
    const expected = await readJson<ExpectedJson>(join(dir, 'expected.json'));
    const work = join(scratch, 'cases', name);
    await mkdir(work, { recursive: true });
    const storeBefore = STORE_UNCHANGED.has(name) ? await storeState(cli.root) : undefined;
    const actual = await buildCase(dir, cli, work);
    const diffs = compareCase(expected, actual);
    assert.ok(diffs.length === 0, `${name} differs from Docker:\n  ${diffs.slice(0, 60).join('\n  ')}`);
    if (storeBefore) assert.deepEqual(await storeState(cli.root), storeBefore, `${name} changed the store before failing`);
  });
}
