import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expandSourcePattern, hasWildcard, matchSegment } from '../../src/context/glob.js';
import { IgnoreMatcher, parseDockerignore } from '../../src/context/dockerignore.js';
import { SlipwayError } from '../../src/errors.js';

describe('hasWildcard (containsWildcards)', () => {
  const CASES: Array<[string, boolean]> = [
    ['f1.txt', false], ['*.txt', true], ['f?.txt', true], ['f[12].txt', true], ['sub/*.md', true],
    ['f\\*.txt', false], ['f\\[1].txt', false], ['a\\\\*', true], ['dir/', false], ['f]', false],
  ];
  for (const [p, expected] of CASES) {
    it(`${p} -> ${expected}`, () => assert.equal(hasWildcard(p), expected));
  }
});

/** Go's filepath.Match examples: [pattern, name, result], 'bad' for ErrBadPattern. */
const MATCH_CASES: Array<[string, string, boolean | 'bad']> = [
  ['abc', 'abc', true],
  ['*', 'abc', true],
  ['*c', 'abc', true],
  ['a*', 'a', true],
  ['a*', 'abc', true],
  ['a*', 'ab/c', false],
  ['a*/b', 'abc/b', true],
  ['a*/b', 'a/c/b', false],
  ['a*b*c*d*e*/f', 'axbxcxdxe/f', true],
  ['a*b*c*d*e*/f', 'axbxcxdxexxx/f', true],
  ['a*b*c*d*e*/f', 'axbxcxdxe/xxx/f', false],
  ['a*b*c*d*e*/f', 'axbxcxdxexxx/fff', false],
  ['a*b?c*x', 'abxbbxdbxebxczzx', true],
  ['a*b?c*x', 'abxbbxdbxebxczzy', false],
  ['ab[c]', 'abc', true],
  ['ab[b-d]', 'abc', true],
  ['ab[e-g]', 'abc', false],
  ['ab[^c]', 'abc', false],
  ['ab[^b-d]', 'abc', false],
  ['ab[^e-g]', 'abc', true],
  ['ab[!c]', 'ab!', true], // Go negates with ^ only: [!c] is the set {!, c}
  ['a\\*b', 'a*b', true],
  ['a\\*b', 'ab', false],
  ['a?b', 'a☺b', true],
  ['a[^a]b', 'a☺b', true],
  ['a???b', 'a☺b', false],
  ['[a-ζ]*', 'α', true],
  ['*[a-ζ]', 'A', false],
  ['a?b', 'a/b', false],
  ['a*b', 'a/b', false],
  ['[\\]a]', ']', true],
  ['[\\-]', '-', true],
  ['[x\\-]', '-', true],
  ['[x\\-]', 'z', false],
  ['[z-a]', 'm', false], // a reversed range matches nothing but is allowed
  ['*x', 'xxx', true],
  ['a.b', 'axb', false],
  ['(x)+', '(x)+', true],
  ['[]a]', ']', 'bad'],
  ['[-]', '-', 'bad'],
  ['[x-]', 'x', 'bad'],
  ['[-x]', 'x', 'bad'],
  ['\\', 'a', 'bad'],
  ['[a-b-c]', 'a', 'bad'],
  ['[', 'a', 'bad'],
  ['[^', 'a', 'bad'],
  ['[^bc', 'a', 'bad'],
  ['a[', 'a', 'bad'],
  ['a[', 'x', 'bad'], // the whole pattern is checked, even after a mismatch
  ['a/b[', 'x', 'bad'],
];

describe('matchSegment (filepath.Match)', () => {
  for (const [pattern, name, expected] of MATCH_CASES) {
    it(`${pattern} ~ ${name} -> ${expected}`, () => {
      if (expected === 'bad') {
        assert.throws(() => matchSegment(pattern, name), (e: unknown) =>
          e instanceof SlipwayError && e.code === 'ERR_CONTEXT_PATH' && e.message === 'syntax error in pattern');
      } else {
        assert.equal(matchSegment(pattern, name), expected);
      }
    });
  }
});

describe('expandSourcePattern', () => {
  let ctx = '';
  const none = () => false;

  before(async () => {
    ctx = await mkdtemp(path.join(os.tmpdir(), 'slipway-glob-'));
    // The copy-wildcards conformance context, plus entries for ordering and symlinks.
    const files = ['notes.text', 'f10.txt', 'f1.txt', 'f2.txt', 'sub/s2.md', 'sub/s1.txt', 'g.md',
      'a/x', 'a.txt', 'B.txt', '\uff5e.u', '\u{1f600}.u', 'deep/one/two/t.txt', 'deep/uno/two/t.txt'];
    for (const f of files) {
      await mkdir(path.dirname(path.join(ctx, f)), { recursive: true });
      await writeFile(path.join(ctx, f), f);
    }
    await symlink('sub', path.join(ctx, 'link'));
  });
  after(async () => {
    await rm(ctx, { recursive: true, force: true });
  });

  const CASES: Array<[string, string[]]> = [
    // the copy-wildcards conformance case (expected.json's layers)
    ['*.txt', ['B.txt', 'a.txt', 'f1.txt', 'f10.txt', 'f2.txt']],
    ['f?.txt', ['f1.txt', 'f2.txt']],
    ['sub/*.txt', ['sub/s1.txt']],
    ['*.md', ['g.md']],
    ['sub/*.md', ['sub/s2.md']],
    ['f[12].txt', ['f1.txt', 'f2.txt']],
    // more
    ['f*', ['f1.txt', 'f10.txt', 'f2.txt']],
    ['*/*.md', ['sub/s2.md']],
    ['deep/*/two/*.txt', ['deep/one/two/t.txt', 'deep/uno/two/t.txt']],
    ['deep/?n?/*/t.txt', ['deep/one/two/t.txt', 'deep/uno/two/t.txt']],
    ['deep/o*/*/t.txt', ['deep/one/two/t.txt']],
    ['./f?.txt', ['f1.txt', 'f2.txt']],
    ['/f?.txt', ['f1.txt', 'f2.txt']],
    ['s*', ['sub']], // a directory matches as a whole
    ['l*', ['link']], // a symlink matches as itself
    ['link/*.txt', []], // but is not entered
    ['*.u', ['\uff5e.u', '\u{1f600}.u']], // names compared as UTF-8 bytes, as Go sorts them
    ['a[/.]*', ['a/x', 'a.txt']], // a class can match '/': Walk order, the directory first
    ['sub//*.txt', []], // the pattern is not cleaned, as in Docker
    ['sub/*/', []],
    ['f[', []], // a malformed pattern matches nothing
    ['*.nothing', []],
    ['../*.txt', []],
    ['sub/../../*.txt', []],
    ['f1.txt', ['f1.txt']],
  ];
  for (const [pattern, expected] of CASES) {
    it(`${pattern} -> ${JSON.stringify(expected)}`, async () => {
      assert.deepEqual(await expandSourcePattern(ctx, pattern, none), expected);
    });
  }

  it('leaves out what .dockerignore excludes', async () => {
    const m = new IgnoreMatcher(parseDockerignore('f1.txt\nsub\n!sub/s1.txt'));
    const ignored = (rel: string) => m.isExcluded(rel);
    assert.deepEqual(await expandSourcePattern(ctx, 'f*.txt', ignored), ['f10.txt', 'f2.txt']);
    assert.deepEqual(await expandSourcePattern(ctx, 'sub/*', ignored), ['sub/s1.txt']);
  });

  it('passes each candidate to isIgnored as a clean relative path', async () => {
    const seen: string[] = [];
    await expandSourcePattern(ctx, './sub/*', (rel) => {
      seen.push(rel);
      return false;
    });
    assert.deepEqual(seen, ['sub/s1.txt', 'sub/s2.md']);
  });
});
