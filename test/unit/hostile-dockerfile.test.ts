import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDockerfile } from '../../src/dockerfile/parse.js';
import { planBuild } from '../../src/dockerfile/plan.js';
import { expandWord, MAX_SUBSTITUTION_DEPTH } from '../../src/dockerfile/expand.js';
import { SlipwayError } from '../../src/errors.js';

/** `${v1:-${v2:-...${vN:-leaf}...}}`: every variable unset, so the value is the leaf. */
function nested(depth: number, leaf = 'x', name = (i: number) => `v${i}`): string {
  let s = leaf;
  for (let i = depth; i > 0; i--) s = `\${${name(i)}:-${s}}`;
  return s;
}

test('nested substitution up to the limit expands as Docker does', () => {
  assert.equal(expandWord(nested(MAX_SUBSTITUTION_DEPTH, 'deep'), () => undefined), 'deep');
  assert.equal(expandWord(nested(50, 'y'), (n) => (n === 'v30' ? 'set' : undefined)), 'set');
});

test('8,000-deep nesting (~56 KB, under the 64 KiB line limit) is a Dockerfile error naming the line, not a stack overflow', () => {
  const text = `FROM busybox\nENV A=1\nENV X=${nested(8000, 'x', (i) => `v${String.fromCharCode(97 + (i % 26))}`)}\n`;
  assert.ok(text.length > 55_000 && text.length < 64 * 1024, String(text.length));
  let err: unknown;
  try {
    planBuild(parseDockerfile(text, 'Dockerfile'));
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof SlipwayError, `expected a SlipwayError, got ${String(err)}`);
  assert.equal(err.code, 'ERR_BAD_SUBSTITUTION');
  assert.equal(err.line, 3);
  assert.match(err.message, /^Dockerfile:3: failed to process "\$\{vb:-\$\{vc:-.{0,80}…: variable substitutions nested more than 256 deep$/);
  assert.ok(err.message.length < 300, 'the message quotes only the start of a huge word');
});

test('a deep nest with a missing brace still reports the depth, wherever it is expanded', () => {
  const word = nested(1000).slice(0, -1);
  assert.throws(() => expandWord(word, () => undefined), (e: unknown) => e instanceof SlipwayError && /nested more than/.test(e.message));
  for (const instr of ['LABEL a=', 'WORKDIR /', 'USER ', 'ARG A=', 'EXPOSE ', 'COPY a ']) {
    const text = `FROM busybox\n${instr}${nested(5000)}${instr.startsWith('COPY') ? ' /d/' : ''}\n`;
    assert.throws(() => planBuild(parseDockerfile(text, 'Dockerfile')), (e: unknown) => e instanceof SlipwayError && e.line === 2, instr);
  }
});

test('other hostile lines parse without recursion trouble', () => {
  const cases = [
    `FROM busybox\nCMD ${'['.repeat(30_000)}\n`,
    `FROM busybox\nCMD ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`,
    `FROM busybox\nRUN ${'"'.repeat(40_000)}\n`,
    `FROM busybox\nLABEL ${'a=b '.repeat(15_000)}\n`,
    `FROM busybox\nRUN echo ${'\\\n'.repeat(20_000)}x\n`,
    `${'ARG A=${A}\n'.repeat(3000)}FROM busybox\n`,
    `FROM busybox\nENV ${'$'.repeat(50_000)}=1\n`,
  ];
  for (const text of cases) {
    try {
      planBuild(parseDockerfile(text, 'Dockerfile'));
    } catch (e) {
      assert.ok(e instanceof SlipwayError, `${text.slice(0, 40)}: ${String(e)}`);
    }
  }
});
