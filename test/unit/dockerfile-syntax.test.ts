import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDockerfile } from '../../src/dockerfile/parse.js';
import { planBuild } from '../../src/dockerfile/plan.js';
import { readDirectives } from '../../src/dockerfile/directives.js';
import { checkPlatform, hostPlatform, parsePlatform, platformArgs } from '../../src/dockerfile/platform.js';
import { isGitSource } from '../../src/dockerfile/copy-flags.js';
import { copySelection } from '../../src/scheduler/copy-select.js';
import { SlipwayError } from '../../src/errors.js';
import type { CopyStep } from '../../src/dockerfile/step.js';

const df = (syntax: string) => `# syntax=${syntax}\nFROM busybox\n`;

test('# syntax= accepts the built-in front end in every spelling', () => {
  for (const s of [
    'docker/dockerfile:1', 'docker/dockerfile:1.4', 'docker/dockerfile:1.7.1', 'docker/dockerfile:1.7-labs', 'docker/dockerfile:1-labs',
    'docker.io/docker/dockerfile:1', 'docker/dockerfile', `docker/dockerfile:1.6@sha256:${'a'.repeat(64)}`,
  ]) assert.doesNotThrow(() => parseDockerfile(df(s)), s);
});

test('# syntax= refuses any other front-end image, naming line 1', () => {
  for (const s of ['docker/dockerfile:2', 'tonistiigi/dockerfile:1', 'docker/dockerfile-upstream:1', 'docker/dockerfile:1.0-experimental', 'ghcr.io/x/y', 'docker/dockerfile:latest']) {
    assert.throws(() => parseDockerfile(df(s)), (e: unknown) => e instanceof SlipwayError && /^Dockerfile:1: unsupported front end/.test(e.message) && e.message.includes(s), s);
  }
});

test('directives: only at the very top, before blank lines, comments and instructions', () => {
  assert.equal(readDirectives('# syntax=a/b\nFROM x\n').syntax?.value, 'a/b');
  assert.equal(readDirectives('# escape=`\n# syntax=a/b:1\nFROM x\n').syntax?.line, 2);
  assert.equal(readDirectives('\n# syntax=a/b\nFROM x\n').syntax, undefined);
  assert.equal(readDirectives('# a comment\n# syntax=a/b\nFROM x\n').syntax, undefined);
  assert.equal(readDirectives('FROM x\n# syntax=a/b\n').syntax, undefined);
  assert.doesNotThrow(() => parseDockerfile('FROM busybox\n# syntax=foo/bar\n'));
});

test('platform: parsing and normalizing as containerd does', () => {
  assert.deepEqual(parsePlatform('linux/amd64'), { os: 'linux', arch: 'amd64', variant: '' });
  assert.deepEqual(parsePlatform('linux/x86_64'), { os: 'linux', arch: 'amd64', variant: '' });
  assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', arch: 'arm64', variant: '' });
  assert.deepEqual(parsePlatform('linux/arm'), { os: 'linux', arch: 'arm', variant: 'v7' });
  assert.equal(parsePlatform('linux/amd64/v3/x'), undefined);
  assert.equal(parsePlatform('a b'), undefined);
});

test('platform: only the host platform is accepted; others are refused naming it', () => {
  const host = `${hostPlatform().os}/${hostPlatform().arch}`;
  assert.doesNotThrow(() => checkPlatform(host));
  const other = hostPlatform().arch === 'amd64' ? 'linux/arm64' : 'linux/amd64';
  assert.throws(() => checkPlatform(other), (e: unknown) => e instanceof SlipwayError && e.message.includes(`host platform ${host}`));
  assert.throws(() => checkPlatform('windows/amd64'), /not supported/);
  assert.throws(() => checkPlatform('not a platform'), /invalid platform/);
});

test('platform ARGs: global for FROM, a bare stage ARG takes them, --build-arg overrides', () => {
  const auto = platformArgs();
  assert.equal(auto['TARGETPLATFORM'], `linux/${auto['TARGETARCH']}`);
  assert.equal(auto['BUILDOS'], 'linux');
  const text = 'FROM --platform=$BUILDPLATFORM busybox:$TARGETARCH AS b\n';
  const plan = planBuild(parseDockerfile(text));
  assert.equal(plan.stages[0]!.base, `busybox:${auto['TARGETARCH']}`);
  assert.equal(plan.globalArgValues.get('TARGETOS'), 'linux');
  const over = planBuild(parseDockerfile('FROM busybox:$TARGETARCH\n'), { buildArgs: { TARGETARCH: 'x' } });
  assert.equal(over.stages[0]!.base, 'busybox:x');
  // A global ARG with a default replaces the automatic value; a bare one keeps it.
  assert.equal(planBuild(parseDockerfile('ARG TARGETOS=plan9\nFROM busybox:$TARGETOS\n')).stages[0]!.base, 'busybox:plan9');
  assert.equal(planBuild(parseDockerfile('ARG TARGETOS\nFROM busybox:$TARGETOS\n')).stages[0]!.base, 'busybox:linux');
});

test('FROM --platform: another platform is refused at plan time, naming the line', () => {
  const other = hostPlatform().arch === 'amd64' ? 'linux/arm64' : 'linux/amd64';
  assert.throws(() => planBuild(parseDockerfile(`FROM busybox\nFROM --platform=${other} busybox\n`)), (e: unknown) => e instanceof SlipwayError && e.message.startsWith('Dockerfile:2: FROM --platform=') && e.message.includes('host platform'));
  assert.throws(() => planBuild(parseDockerfile('ARG P=linux/s390x\nFROM --platform=$P busybox\n')), /Dockerfile:2: .*linux\/s390x is not supported/);
});

const copyStep = (line: string): CopyStep => parseDockerfile(`FROM busybox\n${line}\n`).steps[1] as CopyStep;

test('COPY/ADD flags: --link, --parents as booleans, --exclude repeated, --checksum', () => {
  assert.equal(copyStep('COPY --link a /b').link, true);
  assert.equal(copyStep('COPY --link=false a /b').link, false);
  assert.equal(copyStep('COPY --parents a/b /c/').parents, true);
  assert.deepEqual(copyStep('COPY --exclude=*.log --exclude=tmp a /c/').exclude, ['*.log', 'tmp']);
  const sum = `sha256:${'0'.repeat(64)}`;
  assert.equal(copyStep(`ADD --checksum=${sum} https://example.com/x /x`).checksum, sum);
  assert.throws(() => copyStep('COPY --link=maybe a /b'), /Dockerfile:2: expecting boolean value for flag link, not: maybe/);
});

test('COPY/ADD flag rules are checked at parse time with BuildKit\'s words', () => {
  const sum = `sha256:${'0'.repeat(64)}`;
  const rows: Array<[string, RegExp]> = [
    [`COPY --checksum=${sum} a /b`, /Unknown flag: checksum/],
    [`ADD --checksum=${sum} a b /c/`, /checksum can't be specified for multiple sources/],
    [`ADD --checksum=${sum} local.txt /c`, /checksum can't be specified for non-HTTP\(S\) sources/],
    ['ADD --checksum=md5:abc https://example.com/x /x', /invalid checksum digest format/],
    ['ADD https://github.com/moby/buildkit.git#v0.10.1 /src', /git sources are not supported/],
    ['ADD git@github.com:moby/buildkit.git /src', /git sources are not supported/],
    ['ADD --keep-git-dir https://example.com/x.tar /x', /--keep-git-dir is not supported/],
    ['COPY --parents --from=a x /y/', /--parents with --from is not supported/],
    ['COPY --exclude=x --from=a x /y/', /--exclude with --from is not supported/],
  ];
  for (const [line, re] of rows) assert.throws(() => copyStep(line), (e: unknown) => e instanceof SlipwayError && e.message.startsWith('Dockerfile:2: ') && re.test(e.message), line);
  // A $ source is judged after expansion, not now.
  assert.doesNotThrow(() => copyStep(`ADD --checksum=${sum} $URL /x`));
});

test('git sources are told from plain downloads', () => {
  for (const s of ['git://host/r', 'ssh://git@host/r.git', 'git@github.com:a/b.git', 'https://github.com/a/b.git', 'https://host/a/b.git#main']) assert.ok(isGitSource(s), s);
  for (const s of ['https://example.com/file.tar.gz', 'http://127.0.0.1:8080/x', 'https://host/gitfile']) assert.ok(!isGitSource(s), s);
});

test('COPY --exclude and --parents selection rules', () => {
  const step = copyStep('COPY --parents --exclude=*.log --exclude=!keep.log a /d/');
  const sel = copySelection(step, { exclude: step.exclude!, sources: step.sources, checksum: undefined }, 'Dockerfile');
  assert.equal(sel.excluded('x.log'), true);
  assert.equal(sel.excluded('keep.log'), false);
  assert.equal(sel.excluded('dir/x.log'), false); // depth-1 pattern: only at the top of the source
  assert.deepEqual(sel.filterMatches(['a.txt', 'b.log', 'sub/c.log']), ['a.txt']);
  assert.deepEqual(sel.split('src/./pkg/a.txt'), { clean: 'src/pkg/a.txt', pivot: 'src' });
  assert.deepEqual(sel.split('/src/a.txt'), { clean: 'src/a.txt', pivot: '' });
  assert.equal(sel.destOf('/d/', 'src/pkg/a.txt', 'src'), '/d/pkg/a.txt');
  assert.equal(sel.destOf('/d/', 'x/y.txt', ''), '/d/x/y.txt');
  // A source that normalizes out of its pivot would land outside the destination: refused.
  const out = sel.split('a/./../b.txt');
  assert.throws(() => sel.destOf('/d/', out.clean, out.pivot), /Dockerfile:2: COPY --parents: b\.txt is not below its pivot a\/\.\//);
  assert.deepEqual(sel.keyExtra, { parents: true, exclude: ['*.log', '!keep.log'] });
  const plain = copySelection(copyStep('COPY a /d/'), { exclude: [], sources: ['a'], checksum: undefined }, 'Dockerfile');
  assert.equal(plain.destOf('/d/', 'a', ''), undefined);
  assert.deepEqual(plain.keyExtra, {});
});
