import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { expandWord, expandWords, splitWords, type VarLookup } from '../../src/dockerfile/expand.js';
import { SlipwayError } from '../../src/errors.js';

/** The variables of BuildKit's envVarTest, plus a few of our own. */
const ENV: Record<string, string> = {
  PWD: '/home',
  SHELL: 'bash',
  KOREAN: '한국어',
  NULL: '',
  NAME: 'world',
  space: 'abc  def',
  leading: '  ab c',
  trailing: 'ab c   ',
};
const lookup: VarLookup = (n) => (Object.hasOwn(ENV, n) ? ENV[n] : undefined);

/** An error case: the message must contain this text (Docker's wording). */
interface Fails {
  error: string;
}

/** [word, expected result or error, escape character] */
type WordCase = [string, string | Fails, string?];

const fails = (error: string): Fails => ({ error });

const WORD_CASES: WordCase[] = [
  // plain words and quote removal
  ['hello', 'hello'],
  [`he'll'o`, 'hello'],
  [`he'llo`, fails('unexpected end of statement while looking for matching single-quote')],
  [`he\\'llo`, `he'llo`],
  [`he\\\\'llo`, fails('single-quote')],
  ['abc\\tdef', 'abctdef'],
  ['"abc\\tdef"', 'abc\\tdef'],
  ['"abc\\\\tdef"', 'abc\\tdef'],
  [`'abc\\tdef'`, 'abc\\tdef'],
  ['hello\\', 'hello'],
  ['hello\\\\', 'hello\\'],
  ['"hello', fails('unexpected end of statement while looking for matching double-quote')],
  ['"hello\\"', fails('double-quote')],
  [`"hel'lo"`, `hel'lo`],
  [`'hello`, fails('single-quote')],
  [`'hello\\'`, 'hello\\'],
  [`'hello\\\\there'`, 'hello\\\\there'],
  [`"''"`, `''`],
  [`'"hello"'`, '"hello"'],
  ['a\\ b', 'a b'],
  // `$` that does not start a name stays literal
  ['$.', '$.'],
  ['he$.x', 'he$.x'],
  ['$', '$'],
  ['a$', 'a$'],
  ['"$"', '$'],
  ['$ x', '$ x'],
  // positional and special parameters are never set
  ['he$1x', 'hex'],
  ['$999aaa', 'aaa'],
  ['${1:-bbb}', 'bbb'],
  ['${001:+bbb}aaa', 'aaa'],
  ['$@@@', '@@'],
  ['${#:-bbb}', 'bbb'],
  ['$$', ''],
  ['${?}aaa', 'aaa'],
  // plain references
  ['he$pwd.', 'he.'],
  ['he$PWD', 'he/home'],
  ['he\\$PWD', 'he$PWD'],
  ['he\\\\$PWD', 'he\\/home'],
  ['"he\\$PWD"', 'he$PWD'],
  ['"he\\\\$PWD"', 'he\\/home'],
  [`'he\\$PWD'`, 'he\\$PWD'],
  ['he${hi}xx', 'hexx'],
  ['he${PWD}', 'he/home'],
  ['"he${PWD}"', 'he/home'],
  [`"he'$PWD'"`, `he'/home'`],
  [`'$PWD'`, '$PWD'],
  [`'he\${XX}'`, 'he${XX}'],
  ['${PWD}_suffix', '/home_suffix'],
  ['$PWD_suffix', ''],
  ['\\${}', '${}'],
  ['he\\${}xx', 'he${}xx'],
  // modifiers with a colon: empty counts as unset
  ['he${XXX:-000}xx', 'he000xx'],
  ['he${PWD:-000}xx', 'he/homexx'],
  ['${NULL:-empty}', 'empty'],
  ['he${XXX:+000}xx', 'hexx'],
  ['he${PWD:+000}xx', 'he000xx'],
  ['${NULL:+set}', ''],
  ['he${PWD:?}', 'he/home'],
  ['he${XXX:?}', fails('XXX: is not allowed to be unset')],
  ['he${NULL:?}', fails('NULL: is not allowed to be empty')],
  ['${NULL:?must be given}', fails('NULL: must be given')],
  // modifiers without a colon: only unset counts
  ['${NULL-default}', ''],
  ['${XXX-default}', 'default'],
  ['${PWD-default}', '/home'],
  ['${NULL+alt}', 'alt'],
  ['${XXX+alt}', ''],
  ['he${NULL?}', 'he'],
  ['he${PWD?}', 'he/home'],
  ['he${XXX?}', fails('XXX: is not allowed to be unset')],
  ['${XXX?set XXX please}', fails('XXX: set XXX please')],
  // the word of a modifier is processed itself
  ['he${XXX:-$PWD}xx', 'he/homexx'],
  ['he${XXX:-${PWD:-yyy}}xx', 'he/homexx'],
  ['he${XXX:-${YYY:-yyy}}xx', 'heyyyxx'],
  ['he${XXX:+${PWD}}xx', 'hexx'],
  ['he${PWD:+${XXX}}xx', 'hexx'],
  ['he${PWD:+${SHELL}}xx', 'hebashxx'],
  ['he${PWD:+${PWD}:}xx', 'he/home:xx'],
  ['he${XXX:-\\$PWD:}xx', 'he$PWD:xx'],
  ['he${XXX:-\\${PWD}z}xx', 'he${PWDz}xx'],
  ['${aaa:-bbb {foo}', 'bbb {foo'],
  ['${aaa:-"x}y"}', 'x}y'],
  ['${aaa:-\'$PWD\'}', '$PWD'],
  ['${aaa}}', '}'],
  ['${aaa:-bbb}}', 'bbb}'],
  // syntax errors, with Docker 20.10's words
  ['${B', fails(`failed to process "\${B": missing ':' in substitution`)],
  ['he${PWD', fails("missing ':' in substitution")],
  ['${', fails(`failed to process "\${": syntax error: missing '}'`)],
  ['${}', fails('syntax error: bad substitution')],
  ['he${}xx', fails('syntax error: bad substitution')],
  ['${{aaa}', fails('syntax error: bad substitution')],
  ['${:-bbb}', fails('syntax error: bad substitution')],
  ['he${.}', fails("missing ':' in substitution")],
  ['${aaa:-bbb', fails("syntax error: missing '}'")],
  ['${aaa:-bbb ${foo}', fails("syntax error: missing '}'")],
  ['${aaa:-"bbb', fails("syntax error: missing '}'")],
  ['he${XXX:YYY}', fails('unsupported modifier (Y) in substitution')],
  ['he${PWD:=000}xx', fails('unsupported modifier (=) in substitution')],
  ['${PWD#/}', fails("missing ':' in substitution")],
  ['${PWD/h/H}', fails("missing ':' in substitution")],
  ['"he\\"', fails(`failed to process "\\"he\\\\\\"": unexpected end of statement`)],
  // unicode
  ['안녕하세요', '안녕하세요'],
  [`안'녕'하세요`, '안녕하세요'],
  ['안녕$PWD', '안녕/home'],
  ['안녕\\$PWD', '안녕$PWD'],
  ['$KOREAN', '한국어'],
  ['안녕$KOREAN', '안녕한국어'],
  ['${KOREAN:+한}', '한'],
  ['$안녕x', ''],
  // the escape character is a backtick (# escape=`)
  ['C:\\Windows', 'C:\\Windows', '`'],
  ['a`$PWD', 'a$PWD', '`'],
  ['a\\$PWD', 'a\\/home', '`'],
  ['a` b', 'a b', '`'],
  ['"a`"b"', 'a"b', '`'],
  ['"a\\b`c"', 'a\\b`c', '`'],
  ['"``$PWD"', '`/home', '`'],
  ['x`', 'x', '`'],
];

describe('expandWord (ProcessWord)', () => {
  for (const [word, expected, escape] of WORD_CASES) {
    const label = `${escape === '`' ? '[escape=`] ' : ''}${word}`;
    it(label, () => {
      if (typeof expected === 'string') {
        assert.equal(expandWord(word, lookup, escape ?? '\\'), expected);
      } else {
        assert.throws(
          () => expandWord(word, lookup, escape ?? '\\'),
          (e: unknown) => {
            assert.ok(e instanceof SlipwayError, 'a SlipwayError');
            assert.equal(e.code, 'ERR_BAD_SUBSTITUTION');
            assert.ok(e.message.startsWith('failed to process '), e.message);
            assert.ok(e.message.includes(expected.error), `${e.message} should contain ${expected.error}`);
            return true;
          },
        );
      }
    });
  }
});

/** [text, expected words] as in BuildKit's wordsTest. */
const WORDS_CASES: Array<[string, string[] | Fails]> = [
  ['hello', ['hello']],
  ['hello${hi}bye', ['hellobye']],
  ['hello${space}bye', ['helloabc', 'defbye']],
  ['hello"${space}"bye', ['helloabc  defbye']],
  ['hello "${space}"bye', ['hello', 'abc  defbye']],
  ['hello${leading}def', ['hello', 'ab', 'cdef']],
  ['hello"${leading}" def', ['hello  ab c', 'def']],
  ['hello"${leading}"', ['hello  ab c']],
  ['hello${leading}', ['hello', 'ab', 'c']],
  ['hello${trailing}', ['helloab', 'c']],
  ['hello${trailing}d', ['helloab', 'c', 'd']],
  ['hello"${trailing}"d', ['helloab c   d']],
  ['hel"lo${trailing}"', ['helloab c   ']],
  ['hello" there  "', ['hello there  ']],
  ['hello there     ', ['hello', 'there']],
  ['  hello   there', ['hello', 'there']],
  ['hello\\ there', ['hello there']],
  ['hello" there', fails('double-quote')],
  ['hello\\" there', ['hello"', 'there']],
  ['hello"\\\\there"', ['hello\\there']],
  ['hello"\\there"', ['hello\\there']],
  [`hello'\\\\there'`, ['hello\\\\there']],
  [`hello'$there'`, ['hello$there']],
  ['"" a \'\'', ['a']],
  ['${XXX:-x y}', ['x', 'y']],
  ['${XXX:-"x y"}', ['x', 'y']],
  ['80/tcp ${PORT:-8080}', ['80/tcp', '8080']],
  ['a\tb\nc', ['a', 'b', 'c']],
  ['', []],
];

describe('expandWords (ProcessWords)', () => {
  for (const [text, expected] of WORDS_CASES) {
    it(JSON.stringify(text), () => {
      if (Array.isArray(expected)) {
        assert.deepEqual(expandWords(text, (n) => (n === 'hi' ? '' : lookup(n))), expected);
      } else {
        assert.throws(() => expandWords(text, lookup), (e: unknown) =>
          e instanceof SlipwayError && e.code === 'ERR_BAD_SUBSTITUTION' && e.message.includes(expected.error));
      }
    });
  }
});

/** [text, words, escape]: the parser split keeps quotes and escapes. */
const SPLIT_CASES: Array<[string, string[], string?]> = [
  ['a="x y" b=c', ['a="x y"', 'b=c']],
  [`B="two words" C=three\\ words D='single quoted $A'`, ['B="two words"', 'C=three\\ words', `D='single quoted $A'`]],
  ['  lead   trail  ', ['lead', 'trail']],
  ['a\\"b c', ['a\\"b', 'c']],
  ['"a\\" b" c', ['"a\\" b"', 'c']],
  [`'a\\' b`, [`'a\\'`, 'b']],
  ['x="" y=', ['x=""', 'y=']],
  ['a="unterminated b', ['a="unterminated b']],
  ['a\\', ['a']],
  ['"a\\', ['"a']],
  ['a\tb\u00a0c', ['a', 'b', 'c']],
  ['WINPATH=C:\\Windows OTHER=x', ['WINPATH=C:\\Windows', 'OTHER=x'], '`'],
  ['a=`"b c', ['a=`"b', 'c'], '`'],
  ['${A:-x y}', ['${A:-x', 'y}']],
  ['', []],
];

describe('splitWords (parser parseWords)', () => {
  for (const [text, expected, escape] of SPLIT_CASES) {
    it(`${escape === '`' ? '[escape=`] ' : ''}${JSON.stringify(text)}`, () => {
      assert.deepEqual(splitWords(text, escape ?? '\\'), expected);
    });
  }
});

describe('the env-expansion conformance case', () => {
  it('expands ENV values as Docker recorded them', () => {
    const env: Record<string, string> = { NAME: 'world', DIR: '/srv/app', EMPTY: '' };
    const look: VarLookup = (n) => (Object.hasOwn(env, n) ? env[n] : undefined);
    const line = 'R1=${NAME} R2=$NAME R3=${NAME:-fallback} R4=${UNSET:-fallback} R5=${NAME:+alt} ' +
      'R6=${UNSET:+alt} R7=\\$NAME R8="${NAME}s" R9=${EMPTY:-empty-default} R10=${EMPTY:+set}';
    const got = splitWords(line).map((w) => expandWord(w, look));
    assert.deepEqual(got, ['R1=world', 'R2=world', 'R3=world', 'R4=fallback', 'R5=alt', 'R6=',
      'R7=$NAME', 'R8=worlds', 'R9=empty-default', 'R10=']);
    assert.equal(expandWord(`greeting="hello \${NAME}" literal='\${NAME}'`, look), 'greeting=hello world literal=${NAME}');
  });
});
