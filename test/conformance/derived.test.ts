import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import {
  baseRootfsTar, buildCase, compareCase, corpusFolders, DERIVED_CORPUS_DIR, readJson, SlipwayCli, type ExpectedJson,
} from '../support/conformance.js';

// The derived cases (test/conformance-derived/README.md): the corpus's shape and rules, one store root.
let scratch = '';
let cli: SlipwayCli;

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'slipway-derived-'));
  cli = new SlipwayCli(join(scratch, 'root'));
  await cli.importBase(await baseRootfsTar(), join(scratch, 'import.out'));
});

after(async () => {
  if (process.env['SLIPWAY_CONFORMANCE_KEEP'] === '1') console.log(`derived conformance scratch kept in ${scratch}`);
  else if (scratch) await rm(scratch, { recursive: true, force: true });
});

const folders = await corpusFolders('cases', DERIVED_CORPUS_DIR);
if (folders.length === 0) throw new Error(`no derived conformance cases under ${DERIVED_CORPUS_DIR}`);

for (const dir of folders) {
  const name = basename(dir);
  test(`derived: ${name}`, async () => {
    const expected = await readJson<ExpectedJson>(join(dir, 'expected.json'));
    const work = join(scratch, 'cases', name);
    await mkdir(work, { recursive: true });
    const actual = await buildCase(dir, cli, work);
    const diffs = compareCase(expected, actual);
    assert.ok(diffs.length === 0, `${name} differs from Docker's documented behaviour:\n  ${diffs.slice(0, 60).join('\n  ')}`);
  });
}
