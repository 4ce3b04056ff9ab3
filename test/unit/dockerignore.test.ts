import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IgnoreMatcher, parseDockerignore } from '../../src/context/dockerignore.js';
import { SlipwayError } from '../../src/errors.js';

describe('parseDockerignore (the CLI ReadAll)', () => {
  const PARSE_CASES: Array<[string, string, Array<[string, boolean]>]> = [
    ['comments and blank lines', '# comment\n\n   \n*.log\n', [['*.log', false]]],
    ['a # after spaces is not a comment', '  # not a comment', [['# not a comment', false]]],
    ['surrounding whitespace trimmed', '  foo  \t\n', [['foo', false]]],
    ['CRLF line ends', 'a\r\n!b\r\n', [['a', false], ['b', true]]],
    ['a UTF-8 BOM on the first line', '\uFEFFfoo\nbar', [['foo', false], ['bar', false]]],
    ['exceptions, with space after !', '!keep.log\n!  spaced', [['keep.log', true], ['spaced', true]]],
    ['a trailing slash cleaned away', 'secret/\nbuild//out/', [['secret', false], ['build/out', false]]],
    ['leading slash and ./ removed', '/abs\n./rel\n!/neg', [['abs', false], ['rel', false], ['neg', true]]],
    ['dot segments cleaned', 'a/./b/../c\n../up\na/../..', [['a/c', false], ['../up', false], ['..', false]]],
    ['patterns that clean to . are dropped', '.\n./\na/..\n!.\nx', [['x', false]]],
    ['** kept as written', '**/*.tmp\ndocs/**', [['**/*.tmp', false], ['docs/**', false]]],
  ];
  for (const [name, text, expected] of PARSE_CASES) {
    it(name, () => {
      assert.deepEqual(parseDockerignore(text).map((p) => [p.pattern, p.exclusion]), expected);
    });
  }

  const ERROR_CASES: Array<[string, string]> = [
    ['!', 'illegal exclusion pattern: "!"'],
    ['!   ', 'illegal exclusion pattern: "!"'],
    ['!/', 'illegal exclusion pattern: "!"'],
    ['[abc', 'syntax error in pattern'],
    ['a[]b', 'syntax error in pattern'],
    ['trailing\\', 'syntax error in pattern'],
  ];
  for (const [text, message] of ERROR_CASES) {
    it(`rejects ${JSON.stringify(text)}`, () => {
      assert.throws(() => parseDockerignore(text), (e: unknown) =>
        e instanceof SlipwayError && e.code === 'ERR_CONTEXT_PATH' && e.message === `error checking context: ${message}`);
    });
  }
});

/** [.dockerignore text, path, matches] */
const MATCH_CASES: Array<[string, string, boolean]> = [
  ['*.log', 'debug.log', true],
  ['*.log', 'logs/debug.log', false], // * does not cross /
  ['*.log\n!keep.log', 'keep.log', false],
  ['!keep.log\n*.log', 'keep.log', true], // last match wins
  ['build', 'build', true],
  ['build', 'build/x/y', true], // a parent directory matches
  ['build', 'buildinfo.txt', false],
  ['build', 'sub/build', false], // patterns are anchored at the context root
  ['secret/', 'secret/key.txt', true],
  ['docs/*.md', 'docs/guide.md', true],
  ['docs/*.md', 'docs/img/pic.md', false], // one level only
  ['docs/*.md\n!docs/README.md', 'docs/README.md', false],
  ['**/*.tmp', 'a.tmp', true], // ** matches zero directories
  ['**/*.tmp', 'deep/x/y.tmp', true],
  ['**/*.tmp', 'deep/x/y.tmpl', false],
  ['**', 'anything/at/all', true],
  ['docs/**', 'docs/a/b/c', true],
  ['docs/**', 'docs', false],
  ['a/**/b', 'a/b', true],
  ['a/**/b', 'a/x/y/b', true],
  ['a/**/b', 'a/x/y/b/c', false], // parent checked only at the pattern's depth (3): a/x/y
  ['a/**/b', 'a/b/c', false], // 20.10 quirk: the pattern has 3 parts, the parent only 2 (the walk skips a/b anyway)
  ['f?.txt', 'f1.txt', true],
  ['f?.txt', 'f10.txt', false],
  ['f[12].txt', 'f2.txt', true],
  ['f[^12].txt', 'f3.txt', true],
  ['f[^12].txt', 'f1.txt', false],
  ['f[a-c].txt', 'fb.txt', true],
  ['\\*.txt', '*.txt', true],
  ['\\*.txt', 'a.txt', false],
  ['file.txt', 'fileXtxt', false], // . is literal
  ['a+b(1)|$', 'a+b(1)|$', true], // regex characters are literal
  ['a+b', 'aab', false],
  ['*', 'Dockerfile', true],
  ['*\n!Dockerfile', 'Dockerfile', false],
  ['/abs/path', 'abs/path', true],
  ['sp ace', 'sp ace', true],
  ['ünï*', 'ünïcode', true],
  ['**/node_modules', 'node_modules/x', false], // same quirk: see isExcluded below
  ['**/node_modules', 'pkg/node_modules', true],
];

describe('IgnoreMatcher.matches (PatternMatcher.Matches)', () => {
  for (const [text, path, expected] of MATCH_CASES) {
    it(`${JSON.stringify(text)} ${expected ? 'matches' : 'does not match'} ${path}`, () => {
      assert.equal(new IgnoreMatcher(parseDockerignore(text)).matches(path), expected);
    });
  }
  it('never matches the context root', () => {
    const m = new IgnoreMatcher(parseDockerignore('*\n**'));
    assert.equal(m.matches('.'), false);
    assert.equal(m.matches(''), false);
  });
  it('accepts ./ and trailing / in the path', () => {
    const m = new IgnoreMatcher(parseDockerignore('build'));
    assert.equal(m.matches('./build/'), true);
    assert.equal(m.matches('./build/x'), true);
  });
});

describe('IgnoreMatcher.mayHaveExceptions', () => {
  const CASES: Array<[string, string, boolean]> = [
    ['build\n!build/keep', 'build', true],
    ['build\n!build/keep', 'buil', false],
    ['build\n!build', 'build', true],
    ['build\n!buildx/keep', 'build', false],
    ['build', 'build', false],
    ['build\n!**/keep', 'build', false], // compared as text, as Docker does
    ['a\n!a/b/c', 'a/b', true],
  ];
  for (const [text, dir, expected] of CASES) {
    it(`${JSON.stringify(text)}: ${dir} -> ${expected}`, () => {
      assert.equal(new IgnoreMatcher(parseDockerignore(text)).mayHaveExceptions(dir), expected);
    });
  }
});

/**
 * Docker 20.10's context walk (archive.TarWithOptions): skip excluded entries; enter an
 * excluded directory only when an exception starts with its path.
 */
function walkContext(tree: string[], m: IgnoreMatcher): string[] {
  const dirs = new Set(tree.filter((p) => p.endsWith('/')).map((p) => p.slice(0, -1)));
  const all = tree.map((p) => p.replace(/\/$/, '')).sort();
  const skipped: string[] = [];
  const sent: string[] = [];
  for (const p of all) {
    if (skipped.some((d) => p.startsWith(`${d}/`))) continue;
    if (!m.matches(p)) {
      sent.push(p);
      continue;
    }
    if (dirs.has(p) && !m.mayHaveExceptions(p)) skipped.push(p);
  }
  return sent;
}

describe('the dockerignore conformance case', () => {
  // cases/dockerignore/context/.dockerignore, verbatim
  const DOCKERIGNORE = '# comments are ignored\n*.log\n!keep.log\n**/*.tmp\nsecret/\nbuild\ndocs/*.md\n!docs/README.md\n';
  // context/ plus what make-context.sh creates
  const TREE = [
    '.dockerignore', 'Dockerfile', 'app.txt', 'buildinfo.txt', 'debug.log', 'keep.log', 'a.tmp',
    'deep/', 'deep/x/', 'deep/x/z.txt', 'deep/x/y.tmp',
    'docs/', 'docs/README.md', 'docs/guide.md', 'docs/img/', 'docs/img/pic.md',
    'secret/', 'secret/key.txt', 'build/', 'build/out.txt',
  ];
  // The paths of expected.json's COPY . /app/ layer, without the app/ prefix
  const COPIED = [
    '.dockerignore', 'Dockerfile', 'app.txt', 'buildinfo.txt', 'deep', 'deep/x', 'deep/x/z.txt',
    'docs', 'docs/README.md', 'docs/img', 'docs/img/pic.md', 'keep.log',
  ];
  const m = new IgnoreMatcher(parseDockerignore(DOCKERIGNORE));

  it('parses the file', () => {
    assert.deepEqual(parseDockerignore(DOCKERIGNORE), [
      { pattern: '*.log', exclusion: false },
      { pattern: 'keep.log', exclusion: true },
      { pattern: '**/*.tmp', exclusion: false },
      { pattern: 'secret', exclusion: false },
      { pattern: 'build', exclusion: false },
      { pattern: 'docs/*.md', exclusion: false },
      { pattern: 'docs/README.md', exclusion: true },
    ]);
  });
  it('sends exactly the files Docker copied', () => {
    assert.deepEqual(walkContext(TREE, m), COPIED);
  });
  for (const p of TREE.map((t) => t.replace(/\/$/, ''))) {
    const kept = COPIED.includes(p);
    it(`${p} is ${kept ? 'kept' : 'excluded'}`, () => {
      assert.equal(m.isExcluded(p), !kept);
    });
  }
});

describe('IgnoreMatcher.isExcluded (what the context walk leaves out)', () => {
  it('drops everything below a skipped directory, even if the pattern depth misses it', () => {
    const m = new IgnoreMatcher(parseDockerignore('**/cache'));
    // Matches() alone: a/cache/x/y is checked against its parent at depth 2 (a/cache) - match
    assert.equal(m.isExcluded('a/cache/x/y'), true);
    assert.equal(m.isExcluded('a/b/cache/x'), true);
    assert.equal(m.matches('a/b/cache/x'), false); // 20.10's Matches misses it; the walk never gets there
    const n = new IgnoreMatcher(parseDockerignore('**/node_modules\na/**/b'));
    assert.equal(n.isExcluded('node_modules/x'), true);
    assert.equal(n.isExcluded('a/b/c'), true);
    assert.equal(n.isExcluded('a/bc'), false);
  });
  it('re-includes an exception below an excluded directory', () => {
    const m = new IgnoreMatcher(parseDockerignore('build\n!build/keep.txt'));
    assert.equal(m.isExcluded('build'), true);
    assert.equal(m.isExcluded('build/keep.txt'), false);
    assert.equal(m.isExcluded('build/other.txt'), true);
  });
});
