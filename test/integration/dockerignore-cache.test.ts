/**
 * The cache key of a COPY sees exactly what the build sees of the context: with `dir` excluded
 * and `!dir/keep.txt` bringing one file back, editing that file misses the cache, editing the
 * excluded files beside it does not, and a folder mode that Docker never sees (the daemon makes
 * such a folder 0755) changes nothing either.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { makeContext, slipway, storeWithBusybox } from '../support/cli.js';

function cached(out: string): boolean[] {
  const steps: boolean[] = [];
  for (const line of out.split('\n')) {
    if (/^Step \d+\/\d+ : /.test(line)) steps.push(false);
    else if (line === ' ---> Using cache' && steps.length > 0) steps[steps.length - 1] = true;
  }
  return steps;
}

test('.dockerignore exceptions below an excluded folder: the cache key covers the kept files only', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({
    Dockerfile: 'FROM busybox\nCOPY . /app/\nCOPY dir /d/\n', '.dockerignore': 'dir\n!dir/keep.txt\n',
    'dir/keep.txt': 'keep 1\n', 'dir/drop.txt': 'drop 1\n', 'dir/sub/x.txt': 'x 1\n',
  });
  const build = async (): Promise<boolean[]> => {
    const r = await slipway(root, ['build', '-t', 'ign', ctx]);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    return cached(r.stdout);
  };
  assert.deepEqual(await build(), [false, false, false]);
  const ls = await slipway(root, ['run', '--rm', 'ign', 'sh', '-c', 'cd /app && find . | sort && cat dir/keep.txt && ls -ld /app/dir | cut -c1-10']);
  assert.equal(ls.stdout, '.\n./.dockerignore\n./Dockerfile\n./dir\n./dir/keep.txt\nkeep 1\ndrwxr-xr-x\n', ls.stderr);

  await fs.writeFile(path.join(ctx, 'dir/drop.txt'), 'drop 2, longer\n');
  await fs.writeFile(path.join(ctx, 'dir/sub/x.txt'), 'x 2\n');
  await fs.chmod(path.join(ctx, 'dir'), 0o700);
  assert.deepEqual(await build(), [false, true, true], 'excluded files and the unsent folder mode are not in the key');

  await fs.writeFile(path.join(ctx, 'dir/keep.txt'), 'keep 2\n');
  assert.deepEqual(await build(), [false, false, false], 'the file an exception keeps is');
  const cat = await slipway(root, ['run', '--rm', 'ign', 'cat', '/d/keep.txt']);
  assert.equal(cat.stdout, 'keep 2\n', cat.stderr);
});
