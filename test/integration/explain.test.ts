import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { slipway, storeWithBusybox, makeContext, busyboxTar } from '../support/cli.js';

/** The `Cache miss:` line printed under step N (undefined when it was a hit). */
function missLine(out: string, n: number): string | undefined {
  const block = out.split(/^(?=Step \d+\/\d+ : )/m).find((b) => b.startsWith(`Step ${n}/`));
  assert.ok(block, `no Step ${n} in:\n${out}`);
  if (block.includes(' ---> Using cache')) return undefined;
  return /^ ---> Cache miss: (.*)$/m.exec(block)?.[1];
}

interface Row {
  name: string;
  files: Record<string, string>;
  dockerfile: string;
  args?: string[];
  mutate: (ctx: string) => Promise<void>;
  argsAfter?: string[];
  step: number;
  expect: RegExp | undefined;
}

const COPY_DF = 'FROM busybox\nCOPY src/ /app/\nRUN ls /app > /list\n';
const ROWS: Row[] = [
  { name: 'content', files: { 'src/app.ts': 'one', 'src/b.ts': 'b' }, dockerfile: COPY_DF, mutate: (c) => fs.writeFile(path.join(c, 'src/app.ts'), 'two'), step: 2, expect: /^COPY: content of src\/app\.ts changed$/ },
  { name: 'mode', files: { 'src/run.sh': 'x' }, dockerfile: COPY_DF, mutate: (c) => fs.chmod(path.join(c, 'src/run.sh'), 0o755), step: 2, expect: /^COPY: mode of src\/run\.sh changed 0644 → 0755$/ },
  { name: 'owner (--chown)', files: { 'a.txt': 'a' }, dockerfile: 'FROM busybox\nCOPY --chown=1:1 a.txt /a\n', mutate: (c) => fs.writeFile(path.join(c, 'Dockerfile'), 'FROM busybox\nCOPY --chown=2:2 a.txt /a\n'), step: 2, expect: /^COPY --chown changed \(1:1 → 2:2\)$/ },
  { name: 'rename', files: { 'src/old.ts': 'same' }, dockerfile: COPY_DF, mutate: (c) => fs.rename(path.join(c, 'src/old.ts'), path.join(c, 'src/new.ts')), step: 2, expect: /^COPY: src\/old\.ts renamed to src\/new\.ts$/ },
  { name: 'added file', files: { 'src/a.ts': 'a' }, dockerfile: COPY_DF, mutate: (c) => fs.writeFile(path.join(c, 'src/extra.ts'), 'e'), step: 2, expect: /^COPY: file src\/extra\.ts added$/ },
  { name: 'removed file', files: { 'src/a.ts': 'a', 'src/gone.ts': 'g' }, dockerfile: COPY_DF, mutate: (c) => fs.rm(path.join(c, 'src/gone.ts')), step: 2, expect: /^COPY: file src\/gone\.ts removed$/ },
  { name: 'ignored-file change (no miss)', files: { 'src/a.ts': 'a', 'src/debug.log': '1', '.dockerignore': '**/*.log\n' }, dockerfile: COPY_DF, mutate: (c) => fs.writeFile(path.join(c, 'src/debug.log'), '2'), step: 2, expect: undefined },
  { name: 'ARG', files: {}, dockerfile: 'FROM busybox\nARG VERSION=1.2\nRUN echo $VERSION > /v\n', mutate: async () => undefined, argsAfter: ['--build-arg', 'VERSION=1.3'], step: 3, expect: /^ARG VERSION changed \(1\.2 → 1\.3\)$/ },
  { name: 'ENV', files: {}, dockerfile: 'FROM busybox\nENV MODE=dev\nRUN echo $MODE\n', mutate: (c) => fs.writeFile(path.join(c, 'Dockerfile'), 'FROM busybox\nENV MODE=prod\nRUN echo $MODE\n'), step: 2, expect: /^ENV MODE changed \(dev → prod\)$/ },
  { name: 'WORKDIR', files: {}, dockerfile: 'FROM busybox\nWORKDIR /a\nRUN pwd\n', mutate: (c) => fs.writeFile(path.join(c, 'Dockerfile'), 'FROM busybox\nWORKDIR /b\nRUN pwd\n'), step: 2, expect: /^WORKDIR changed \(\/a → \/b\)$/ },
  { name: 'USER', files: {}, dockerfile: 'FROM busybox\nUSER root\nRUN id\n', mutate: (c) => fs.writeFile(path.join(c, 'Dockerfile'), 'FROM busybox\nUSER nobody\nRUN id\n'), step: 2, expect: /^USER changed \(root → nobody\)$/ },
  { name: 'SHELL', files: {}, dockerfile: 'FROM busybox\nSHELL ["/bin/sh", "-c"]\nRUN echo x\n', mutate: (c) => fs.writeFile(path.join(c, 'Dockerfile'), 'FROM busybox\nSHELL ["/bin/sh", "-e", "-c"]\nRUN echo x\n'), step: 2, expect: /^SHELL changed \(\/bin\/sh -c → \/bin\/sh -e -c\)$/ },
  { name: 'parent rebuilt', files: {}, dockerfile: 'FROM busybox\nENV A=1\nRUN echo $A\n', mutate: (c) => fs.writeFile(path.join(c, 'Dockerfile'), 'FROM busybox\nENV A=2\nRUN echo $A\n'), step: 3, expect: /^parent rebuilt \(step 2\)$/ },
  { name: 'first build', files: {}, dockerfile: 'FROM busybox\nRUN echo never-built-before-xyz\n', mutate: async () => undefined, step: 2, expect: /^no earlier build of this step$/ },
];

for (const row of ROWS) {
  test(`cache miss explanation: ${row.name}`, async () => {
    const root = await storeWithBusybox();
    const ctx = await makeContext({ Dockerfile: row.dockerfile, ...row.files });
    for (const f of Object.keys(row.files)) await fs.chmod(path.join(ctx, f), 0o644);
    const tag = ['-t', 'explain:latest'];
    if (row.name !== 'first build') {
      const first = await slipway(root, ['build', ...tag, ...(row.args ?? []), ctx]);
      assert.equal(first.code, 0, first.stderr);
    }
    await row.mutate(ctx);
    const second = await slipway(root, ['build', ...tag, ...(row.argsAfter ?? row.args ?? []), ctx]);
    assert.equal(second.code, 0, second.stderr);
    const line = missLine(second.stdout, row.step);
    if (row.expect === undefined) assert.equal(line, undefined, `expected a hit:\n${second.stdout}`);
    else assert.match(line ?? '<hit>', row.expect);
  });
}

test('cache miss explanation: other COPY sources, several files at once', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nCOPY . /app/\n', 'package.json': '{}', 'lock.json': '1', 'src/a.ts': 'a', 'src/b.ts': 'b', 'src/c.ts': 'c' });
  assert.equal((await slipway(root, ['build', '-t', 'multi', ctx])).code, 0);
  for (const f of ['src/a.ts', 'src/b.ts', 'src/c.ts']) await fs.writeFile(path.join(ctx, f), 'changed');
  const r = await slipway(root, ['build', '-t', 'multi', ctx]);
  assert.equal(missLine(r.stdout, 2), 'COPY: content of src/a.ts changed; content of src/b.ts changed (+1 more)');
  const stats = JSON.parse((await slipway(root, ['stats', '--format', 'json', '--tag', 'multi'])).stdout);
  assert.deepEqual(stats.breakers.map((b: { input: string }) => b.input).sort(), ['content of src/a.ts', 'content of src/b.ts', 'content of src/c.ts']);
  await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM busybox\nCOPY package.json lock.json /app/\n');
  const r2 = await slipway(root, ['build', '-t', 'multi', ctx]);
  assert.equal(missLine(r2.stdout, 2), 'COPY sources changed (. → package.json lock.json)');
});

test('cache miss explanation: base image changed', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM base:1\nRUN echo hi\n' });
  assert.equal((await slipway(root, ['tag', 'busybox', 'base:1'])).code, 0);
  assert.equal((await slipway(root, ['build', '-t', 'child', ctx])).code, 0);
  // A different base image under the same name.
  assert.equal((await slipway(root, ['import', '--change', 'CMD ["sh"]', '-m', 'another', await busyboxTar(), 'base:1'])).code, 0);
  const r = await slipway(root, ['build', '-t', 'child', ctx]);
  assert.match(missLine(r.stdout, 2) ?? '', /^base image changed \([0-9a-f]{12} → [0-9a-f]{12}\)$/);
});

test('build --plan agrees with the build that follows, and stats count hits and breakers', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nCOPY a.txt /a\nRUN cat /a\nENV Z=1\n', 'a.txt': 'one' });
  assert.equal((await slipway(root, ['build', '-t', 'p:1', ctx])).code, 0);
  await fs.writeFile(path.join(ctx, 'a.txt'), 'two');
  const plan = await slipway(root, ['build', '--plan', '-t', 'p:1', ctx]);
  assert.equal(plan.code, 0, plan.stderr);
  assert.match(plan.stdout, /Step 2\/4 : COPY a.txt \/a\n ---> Plan: miss: COPY: content of a.txt changed, est\. \d+\.\d s\n/);
  assert.match(plan.stdout, /Step 3\/4 : RUN cat \/a\n ---> Plan: miss: parent rebuilt \(step 2\)/);
  const real = await slipway(root, ['build', '-t', 'p:1', ctx]);
  assert.equal(missLine(real.stdout, 2), 'COPY: content of a.txt changed');
  assert.equal(missLine(real.stdout, 3), 'parent rebuilt (step 2)');
  const plan2 = await slipway(root, ['build', '--plan', '-t', 'p:1', ctx]);
  assert.equal((plan2.stdout.match(/Plan: hit/g) ?? []).length, 3);
  const stats = JSON.parse((await slipway(root, ['stats', '--format', 'json', '--tag', 'p:1'])).stdout);
  assert.equal(stats.total.builds, 2);
  assert.equal(stats.total.steps, 6);
  assert.equal(stats.total.hits, 0);
  assert.deepEqual(stats.breakers[0], { input: 'content of a.txt', misses: 1 });
});

test('a step executed again with different content is reported as not reproducible; mtimes alone are not', async () => {
  const root = await storeWithBusybox();
  // Each step's parent is the base, so --no-cache executes exactly the same key again.
  const same = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo same > /same && sleep 1\n' });
  const random = await makeContext({ Dockerfile: 'FROM busybox\nRUN head -c 16 /dev/urandom > /random\n' });
  for (const ctx of [same, random]) assert.equal((await slipway(root, ['build', ctx])).code, 0);
  const a = await slipway(root, ['build', '--no-cache', same]);
  assert.equal(a.code, 0, a.stderr);
  assert.doesNotMatch(a.stdout, /not reproducible/);
  const b = await slipway(root, ['build', '--no-cache', random]);
  assert.equal(b.code, 0, b.stderr);
  assert.match(b.stdout, /^warning: step 2 is not reproducible \(RUN head -c 16 \/dev\/urandom > \/random\)$/m);
});
