import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDockerfile } from '../../src/dockerfile/parse.js';
import { planBuild } from '../../src/dockerfile/plan.js';
import { SlipwayError } from '../../src/errors.js';

/** [name, Dockerfile text, expected 1-based line, message fragment, code, plan options] */
const CASES: Array<[string, string, number, string, string, { target?: string }?]> = [
  ['unknown instruction', 'FROM busybox\nFROBNICATE now\n', 2, 'unknown instruction: FROBNICATE', 'ERR_DOCKERFILE_SYNTAX'],
  ['unknown instruction, lower case', 'FROM busybox\nfrobnicate now\n', 2, 'unknown instruction: FROBNICATE', 'ERR_DOCKERFILE_SYNTAX'],
  ['instruction before FROM', 'RUN echo too early\nFROM busybox\n', 1, 'no build stage in current context', 'ERR_DOCKERFILE_NO_STAGE'],
  ['ENV before FROM', '# c\nENV A=1\nFROM busybox\n', 2, 'no build stage in current context', 'ERR_DOCKERFILE_NO_STAGE'],
  ['FROM with two arguments', 'FROM busybox extra\n', 1, 'FROM requires either one or three arguments', 'ERR_DOCKERFILE_SYNTAX'],
  ['FROM without arguments', 'FROM\n', 1, 'FROM requires either one or three arguments', 'ERR_DOCKERFILE_SYNTAX'],
  ['bad stage name', 'FROM busybox AS 1abc\n', 1, 'invalid name for build stage', 'ERR_DOCKERFILE_SYNTAX'],
  ['duplicate stage name', 'FROM busybox AS a\nFROM busybox AS a\n', 2, 'duplicate name a', 'ERR_DOCKERFILE_SYNTAX'],
  ['COPY with one argument', 'FROM busybox\nCOPY onlyone\n', 2, 'COPY requires at least two arguments', 'ERR_DOCKERFILE_SYNTAX'],
  ['ADD with no argument', 'FROM busybox\nADD\n', 2, 'ADD requires at least two arguments', 'ERR_DOCKERFILE_SYNTAX'],
  ['RUN with no argument', 'FROM busybox\nRUN\n', 2, 'RUN requires at least one argument', 'ERR_DOCKERFILE_SYNTAX'],
  ['unknown COPY flag', 'FROM busybox\nCOPY --frob=1 a b\n', 2, 'Unknown flag: frob', 'ERR_DOCKERFILE_SYNTAX'],
  ['flag of another instruction', 'FROM busybox\nRUN --chown=1 true\n', 2, 'Unknown flag: chown', 'ERR_DOCKERFILE_SYNTAX'],
  ['flag without value', 'FROM busybox\nCOPY --from a b\n', 2, 'Missing a value on flag: from', 'ERR_DOCKERFILE_SYNTAX'],
  ['duplicate flag', 'FROM busybox\nCOPY --from=a --from=b x y\n', 2, 'Duplicate flag specified: from', 'ERR_DOCKERFILE_SYNTAX'],
  ['SHELL not JSON', 'FROM busybox\nSHELL /bin/sh -c\n', 2, 'SHELL requires the arguments to be in JSON form', 'ERR_DOCKERFILE_SYNTAX'],
  ['SHELL bad JSON', 'FROM busybox\nSHELL ["/bin/sh", "-c"\n', 2, 'SHELL requires the arguments to be in JSON form', 'ERR_DOCKERFILE_SYNTAX'],
  ['ENV without value', 'FROM busybox\nENV A\n', 2, 'ENV must have two arguments', 'ERR_DOCKERFILE_SYNTAX'],
  ['ENV pair without =', 'FROM busybox\nENV A=1 B\n', 2, `can't find = in "B"`, 'ERR_DOCKERFILE_SYNTAX'],
  ['LABEL blank name', 'FROM busybox\nLABEL =x\n', 2, 'LABEL names can not be blank', 'ERR_DOCKERFILE_SYNTAX'],
  ['HEALTHCHECK unknown type', 'FROM busybox\nHEALTHCHECK FOO x\n', 2, 'Unknown type "FOO" in HEALTHCHECK', 'ERR_DOCKERFILE_SYNTAX'],
  ['HEALTHCHECK bad duration', 'FROM busybox\nHEALTHCHECK --interval=abc CMD true\n', 2, 'time: invalid duration "abc"', 'ERR_DOCKERFILE_SYNTAX'],
  ['HEALTHCHECK bad retries', 'FROM busybox\nHEALTHCHECK --retries=-1 CMD true\n', 2, '--retries must be a non-negative integer', 'ERR_DOCKERFILE_SYNTAX'],
  ['ONBUILD ONBUILD', 'FROM busybox\nONBUILD ONBUILD RUN x\n', 2, 'Chaining ONBUILD', 'ERR_DOCKERFILE_SYNTAX'],
  ['ONBUILD FROM', 'FROM busybox\nONBUILD FROM x\n', 2, "FROM isn't allowed as an ONBUILD trigger", 'ERR_DOCKERFILE_SYNTAX'],
  ['ONBUILD unknown trigger', 'FROM busybox\nONBUILD FROBNICATE x\n', 2, 'unknown instruction: FROBNICATE', 'ERR_DOCKERFILE_SYNTAX'],
  ['error after a continuation', 'FROM busybox\nRUN echo a \\\n  b \\\n  c\nFROBNICATE\n', 5, 'unknown instruction: FROBNICATE', 'ERR_DOCKERFILE_SYNTAX'],
  ['error on a continued instruction names its first line', 'FROM busybox\nCOPY \\\n  --frob=1 \\\n  a b\n', 2, 'Unknown flag: frob', 'ERR_DOCKERFILE_SYNTAX'],
  ['escape directive: backtick continues', '# escape=`\nFROM busybox\nRUN echo a `\n  b\nFROBNICATE\n', 5, 'unknown instruction: FROBNICATE', 'ERR_DOCKERFILE_SYNTAX'],
  ['escape directive: backslash no longer continues', '# escape=`\nFROM busybox\nRUN echo a \\\nFROBNICATE\n', 4, 'unknown instruction: FROBNICATE', 'ERR_DOCKERFILE_SYNTAX'],
  ['comments and blank lines count', '# one\n\n# three\nFROM busybox\n\nBOGUS\n', 6, 'unknown instruction: BOGUS', 'ERR_DOCKERFILE_SYNTAX'],
  ['bad substitution', 'FROM busybox\nENV A=${B\n', 2, 'failed to process', 'ERR_BAD_SUBSTITUTION'],
  ['bad substitution in FROM', 'ARG X\nFROM busybox${X\n', 2, 'failed to process', 'ERR_BAD_SUBSTITUTION'],
  ['blank FROM after expansion', 'ARG IMG\nFROM $IMG\n', 2, 'should not be blank', 'ERR_DOCKERFILE_SYNTAX'],
  ['undefined --target', 'FROM busybox AS a\nRUN true\n', 0, 'failed to reach build target nope in Dockerfile', 'ERR_UNKNOWN_STAGE', { target: 'nope' }],
  ['no FROM at all', 'ARG A=1\n', 0, 'no build stage in current context', 'ERR_DOCKERFILE_NO_STAGE'],
];

for (const [name, text, line, fragment, code, opts] of CASES) {
  test(`Dockerfile error: ${name}`, () => {
    let err: unknown;
    try {
      planBuild(parseDockerfile(text, 'Dockerfile'), opts ?? {});
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof SlipwayError, `expected a SlipwayError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.ok(err.message.includes(fragment), `message ${JSON.stringify(err.message)} lacks ${JSON.stringify(fragment)}`);
    if (line > 0) {
      assert.equal(err.line, line);
      assert.ok(err.message.startsWith(`Dockerfile:${line}: `), err.message);
    }
  });
}

test('Step text joins continuations as Docker prints them', () => {
  const df = parseDockerfile('# escape=`\nFROM busybox\nRUN echo one `\n# dropped comment\n    two `\n\n    three > /j\n', 'Dockerfile');
  const run = df.steps[1]!;
  assert.equal(run.kind, 'RUN');
  assert.equal(run.text, 'RUN echo one     two     three > /j');
  assert.equal(run.line, 3);
  assert.equal(df.warnings.length, 1);
});

test('exec form keeps spaces inside JSON strings (dockerfile-ast drops them)', () => {
  const df = parseDockerfile('FROM busybox\nRUN ["/bin/echo", "hi  there"]\nCMD ["a b"]\n', 'Dockerfile');
  const run = df.steps[1]!;
  assert.ok(run.kind === 'RUN' && run.form === 'exec');
  assert.deepEqual(run.kind === 'RUN' && run.form === 'exec' ? run.exec : [], ['/bin/echo', 'hi  there']);
});

test('invalid JSON falls back to the shell form', () => {
  const df = parseDockerfile("FROM busybox\nRUN ['touch', '/x']\nRUN [ \"a\" = \"a\" ]\n", 'Dockerfile');
  for (const s of df.steps.slice(1)) assert.ok(s.kind === 'RUN' && s.form === 'shell');
});

test('stages: names, indexes, FROM an earlier stage, --target keeps earlier stages', () => {
  const df = parseDockerfile('ARG BASE=busybox\nFROM ${BASE} AS one\nRUN true\nFROM one AS two\nENV A=1\nFROM two\nRUN x\n', 'Dockerfile');
  const plan = planBuild(df, { target: 'two' });
  assert.equal(plan.stages.length, 2);
  assert.equal(plan.stages[0]!.base, 'busybox');
  assert.equal(plan.stages[1]!.baseStage, 0);
  assert.equal(plan.total, 5);
  const over = planBuild(df, { buildArgs: { BASE: 'other' } });
  assert.equal(over.stages[0]!.base, 'other');
  assert.equal(over.total, 7);
});
