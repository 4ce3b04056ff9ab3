/**
 * Docker's conventions as plain functions: Go templates for --format, the tabwriter, global flags
 * anywhere, cobra's flag errors, and the container options of build (--add-host, --ulimit,
 * --shm-size, --output) down to the OCI spec.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseArgs } from 'node:util';
import { execTemplate, goJson, goPrint, parseTemplate } from '../../src/cli/go-template.js';
import { renderRows, strictRow, tabwrite } from '../../src/cli/format-template.js';
import { takeGlobalFlags } from '../../src/cli/global-flags.js';
import { dockerFlagMessage } from '../../src/cli/flag-errors.js';
import { buildExtras, parseOutput } from '../../src/cli/build-flags.js';
import { looksLikeArchive } from '../../src/cli/build-input.js';
import { parseAddHost, parseUlimit } from '../../src/sandbox/container-flags.js';
import { hostsFile } from '../../src/sandbox/etc-files.js';
import { ociSpec, type ContainerSpec } from '../../src/sandbox/oci-spec.js';

const tpl = (t: string, dot: unknown) => execTemplate(parseTemplate(t), dot);

test('Go templates: fields, json, functions, pipes, %v of lists and maps, trim markers', () => {
  const doc = { Id: 'sha256:ab', Config: { Env: ['A=1', 'B=2'], Labels: { b: '2', a: '<1>' }, Cmd: null }, Size: 1234567 };
  assert.equal(tpl('{{.Id}}', doc), 'sha256:ab');
  assert.equal(tpl('{{.Config.Env}}', doc), '[A=1 B=2]');
  assert.equal(tpl('{{.Config.Labels}}', doc), 'map[a:<1> b:2]');
  assert.equal(tpl('{{json .Config.Labels}}', doc), '{"b":"2","a":"\\u003c1\\u003e"}');
  assert.equal(tpl('{{.Config.Cmd}}', doc), '<nil>');
  assert.equal(tpl('{{.Missing}}', doc), '<no value>');
  assert.equal(tpl('{{.Size}}', doc), '1234567');
  assert.equal(tpl('{{.Id | upper}}', doc), 'SHA256:AB');
  assert.equal(tpl('{{join .Config.Env ","}}', doc), 'A=1,B=2');
  assert.equal(tpl('{{len .Config.Env}}', doc), '2');
  assert.equal(tpl('a {{- " b " -}} c', doc), 'a b c');
  assert.equal(goPrint([1, 'x', true]), '[1 x true]');
  assert.equal(goJson('a&b'), '"a\\u0026b"');
});

test('Go templates: control actions, unknown functions and fields of a formatter context are errors', () => {
  assert.throws(() => parseTemplate('{{range .X}}{{end}}'), /\{\{range\}\} is not supported/);
  assert.throws(() => tpl('{{frob .X}}', {}), /function "frob" not defined/);
  assert.throws(() => tpl('{{.Nope}}', strictRow('*formatter.imageContext', { ID: 'x' })), /can't evaluate field Nope in type \*formatter\.imageContext/);
  assert.throws(() => parseTemplate('{{.X'), /unclosed action/);
});

test('table formats: a header from the same template, columns at least 10 wide with 3 spaces', () => {
  const header = strictRow('t', { Repository: 'REPOSITORY', Tag: 'TAG', ID: 'IMAGE ID' });
  const rows = [strictRow('t', { Repository: 'busybox', Tag: 'latest', ID: '7a125d0f3742' }), strictRow('t', { Repository: 'a/very-long-name', Tag: '1', ID: 'abc' })];
  assert.equal(renderRows('table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}', rows, header),
    'REPOSITORY         TAG       IMAGE ID\nbusybox            latest    7a125d0f3742\na/very-long-name   1         abc\n');
  assert.equal(renderRows('{{.Repository}}:{{.Tag}}', rows, header), 'busybox:latest\na/very-long-name:1\n');
  assert.equal(tabwrite(['a\tb', 'ccc\td']), 'a         b\nccc       d\n');
});

test('global flags are taken anywhere, but not from a run container\'s arguments or after --', () => {
  const none = () => new Set<string>();
  assert.deepEqual(takeGlobalFlags(['build', '--root', '/x', '-t', 'a', '.', '--debug'], none), { argv: ['build', '-t', 'a', '.'], debug: true, root: '/x' });
  assert.deepEqual(takeGlobalFlags(['images', '--root=/y', '-D'], none), { argv: ['images'], debug: true, root: '/y' });
  const runFlags = () => new Set(['-e']);
  assert.deepEqual(takeGlobalFlags(['run', '-e', 'X', '--root', '/z', 'img', 'sh', '--debug', '--root', 'q'], runFlags), { argv: ['run', '-e', 'X', 'img', 'sh', '--debug', '--root', 'q'], debug: false, root: '/z' });
  assert.deepEqual(takeGlobalFlags(['build', '--', '--debug'], none).argv, ['build', '--', '--debug']);
  assert.equal(takeGlobalFlags(['images', '--root'], none).missingValue, '--root');
});

test('parseArgs errors read as cobra\'s', () => {
  const err = (args: string[]) => {
    try {
      parseArgs({ args, options: { tag: { type: 'string', short: 't' }, quiet: { type: 'boolean', short: 'q' } }, allowPositionals: !args.includes('pos') });
    } catch (e) {
      const x = e as NodeJS.ErrnoException;
      return dockerFlagMessage(x.code!, x.message, 'build');
    }
    return 'no error';
  };
  assert.equal(err(['--frob']), 'unknown flag: --frob');
  assert.equal(err(['--frob=1']), 'unknown flag: --frob');
  assert.equal(err(['-x']), "unknown shorthand flag: 'x' in -x");
  assert.equal(err(['-t']), 'flag needs an argument: --tag');
  assert.match(err(['pos']), /"slipway build" accepts no arguments/);
});

test('--add-host, --ulimit, --shm-size and --output parse with Docker\'s syntax', () => {
  assert.deepEqual(parseAddHost('db:10.0.0.1'), { host: 'db', ip: '10.0.0.1' });
  assert.deepEqual(parseAddHost('v6=fd00::1'), { host: 'v6', ip: 'fd00::1' });
  assert.deepEqual(parseAddHost('v6:[fd00::2]'), { host: 'v6', ip: 'fd00::2' });
  assert.throws(() => parseAddHost('bad host:1.2.3.4'), /invalid hostname/);
  assert.throws(() => parseAddHost('h:1.2.3.4\n5.6.7.8 evil'), /invalid IP address/);
  assert.deepEqual(parseUlimit('nofile=10:20'), { name: 'nofile', soft: 10, hard: 20 });
  assert.deepEqual(parseUlimit('core=-1'), { name: 'core', soft: -1, hard: -1 });
  assert.throws(() => parseUlimit('nofile=-1:5'), /soft limit/);
  assert.equal(buildExtras({ 'shm-size': '128m' }).shmSize, 128 * 1024 * 1024);
  assert.throws(() => buildExtras({ 'shm-size': '0' }), /greater than 0/);
  assert.throws(() => buildExtras({ platform: 'linux/s390x' }), /host platform linux\/amd64/);
  assert.deepEqual(parseOutput('type=tar,dest=/tmp/x.tar'), { type: 'tar', dest: '/tmp/x.tar' });
  assert.deepEqual(parseOutput('/tmp/out'), { type: 'local', dest: '/tmp/out' });
  assert.throws(() => parseOutput('type=local,dest=/x,foo=1'), /unsupported attribute foo/);
  assert.throws(() => parseOutput('type=docker'), /not supported/);
});

test('the OCI spec carries --ulimit as rlimits and --shm-size as the /dev/shm size; extra hosts follow the defaults', () => {
  const base: ContainerSpec = {
    rootfs: '/r', argv: ['sh'], env: [], cwd: '/', uid: 0, gid: 0, groups: [], hostname: 'h', terminal: false, network: 'host', join: {},
    etc: { hosts: '/h', hostname: '/n', resolvConf: '/c' },
  };
  const plain = ociSpec(base);
  assert.equal(plain.process.rlimits, undefined);
  assert.ok(plain.mounts.find((m) => m.destination === '/dev/shm')!.options!.includes(`size=${64 * 1024 * 1024}`));
  const spec = ociSpec({ ...base, shmSize: 1 << 27, ulimits: [{ name: 'nofile', soft: 100, hard: 200 }, { name: 'core', soft: -1, hard: -1 }] });
  assert.deepEqual(spec.process.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 200, soft: 100 }, { type: 'RLIMIT_CORE', hard: Number.MAX_SAFE_INTEGER, soft: Number.MAX_SAFE_INTEGER }]);
  assert.ok(spec.mounts.find((m) => m.destination === '/dev/shm')!.options!.includes(`size=${1 << 27}`));
  assert.match(hostsFile('h'), /^127\.0\.0\.1\tlocalhost h\n/);
});

test('stdin: archives are told from a Dockerfile by their first bytes', () => {
  assert.ok(looksLikeArchive(Buffer.from([0x1f, 0x8b, 8, 0])));
  assert.ok(looksLikeArchive(Buffer.from('BZh91AY')));
  const tarHead = Buffer.alloc(512);
  tarHead.write('ustar', 257, 'latin1');
  assert.ok(looksLikeArchive(tarHead));
  assert.ok(!looksLikeArchive(Buffer.from('FROM busybox\nRUN true\n')));
});
