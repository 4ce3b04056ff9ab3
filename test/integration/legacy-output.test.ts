import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { slipway, storeWithBusybox, makeContext } from '../support/cli.js';

/** The output lines of step `n` (after its `Step n/m :` line, up to the next step or the end). */
function stepLines(out: string, n: number): string[] {
  const lines = out.split('\n');
  const at = lines.findIndex((l) => l.startsWith(`Step ${n}/`));
  assert.ok(at >= 0, `no step ${n} in:\n${out}`);
  const end = lines.findIndex((l, i) => i > at && /^(Step \d+\/|Successfully built )/.test(l));
  return lines.slice(at + 1, end < 0 ? undefined : end).filter((l) => l !== '' && !l.startsWith(' ---> Cache miss'));
}

/**
 * What Docker 20.10.24's legacy builder prints around steps (recorded: the output.txt of the
 * corpus's copy-basic and add-archives, and of test/conformance-derived's healthcheck-partial and
 * workdir-on-file): COPY and ADD make no container; WORKDIR's and a metadata step's are shown.
 */
test('COPY and ADD show no container; WORKDIR, metadata and RUN steps do; a replaced HEALTHCHECK is noted', async () => {
  const root = await storeWithBusybox();
  try {
    const ctx = await makeContext({
      'f': 'x\n',
      'Dockerfile': 'FROM busybox\nHEALTHCHECK CMD a\nCOPY f /f\nADD f /g\nWORKDIR /w\nHEALTHCHECK --timeout=3s CMD ["b", "c"]\nRUN true\n',
    });
    const r = await slipway(root, ['build', '-t', 'shown', ctx]);
    assert.equal(r.code, 0, r.stderr);
    const running = /^ ---> Running in [0-9a-f]{12}$/;
    const removing = /^Removing intermediate container [0-9a-f]{12}$/;
    for (const n of [3, 4]) assert.deepEqual(stepLines(r.stdout, n).map((l) => l.replace(/[0-9a-f]{12}$/, 'ID')), [' ---> ID'], `step ${n}`);
    for (const n of [2, 5, 7]) {
      const lines = stepLines(r.stdout, n);
      assert.match(lines[0]!, running, `step ${n}`);
      assert.match(lines[1]!, removing, `step ${n}`);
    }
    const hc = stepLines(r.stdout, 6);
    assert.equal(hc[0], 'Note: overriding previous HEALTHCHECK: [CMD-SHELL a]');
    assert.match(hc[1]!, running);
    // From the cache: the note still, then no container.
    const again = await slipway(root, ['build', '-t', 'shown', ctx]);
    assert.deepEqual(stepLines(again.stdout, 6).slice(0, 2), ['Note: overriding previous HEALTHCHECK: [CMD-SHELL a]', ' ---> Using cache']);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('a file in the way of WORKDIR or a COPY destination fails with the daemon\'s words and the line, before a container is shown', async () => {
  const root = await storeWithBusybox();
  try {
    const repos = fs.readFileSync(path.join(root, 'repositories'), 'utf8');
    const cases: Array<[string, RegExp]> = [
      ['WORKDIR /afile', /^Error: Dockerfile:3: Cannot mkdir: \/afile is not a directory$/m],
      ['WORKDIR /afile/sub', /^Error: Dockerfile:3: lstat \/afile\/sub: not a directory$/m],
      ['COPY f /afile/sub/', /^Error: Dockerfile:3: failed to copy files: lstat \/afile\/sub: not a directory$/m],
      ['COPY f /afile/', /^Error: Dockerfile:3: failed to copy files: failed to create new directory: mkdir \/afile: not a directory$/m],
    ];
    for (const [step, message] of cases) {
      const ctx = await makeContext({ 'f': 'x\n', 'Dockerfile': `FROM busybox\nRUN touch /afile\n${step}\n` });
      const r = await slipway(root, ['build', '-t', 'in-the-way', ctx]);
      assert.notEqual(r.code, 0, step);
      assert.match(r.stderr, message, step);
      assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
      assert.deepEqual(stepLines(r.stdout, 3), [], `${step}: nothing shown for the failed step`);
      assert.equal(fs.readFileSync(path.join(root, 'repositories'), 'utf8'), repos, 'no tag');
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
