import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRunMount, parseSecurity, mountFields } from '../../src/dockerfile/run-mounts.js';
import { parseDockerfile } from '../../src/dockerfile/parse.js';
import { ociSpec, ALL_CAPABILITIES, type ContainerSpec } from '../../src/sandbox/oci-spec.js';
import { SlipwayError } from '../../src/errors.js';

const fail = (d: string) => new Error(d);
const parse = (spec: string, workdir = '/') => parseRunMount(spec, workdir, 0, fail);

test('cache mounts: defaults and every option', () => {
  assert.deepEqual(parse('type=cache,target=/root/.npm'), {
    type: 'cache', target: '/root/.npm', id: '/root/.npm', sharing: 'shared', source: '/', readonly: false, mode: 0o755, uid: 0, gid: 0,
  });
  assert.deepEqual(parse('type=cache,id=npm,dst=cache,sharing=locked,from=deps,source=/x,mode=0700,uid=1000,gid=100,ro', '/app'), {
    type: 'cache', target: '/app/cache', id: 'npm', sharing: 'locked', from: 'deps', source: '/x', readonly: true, mode: 0o700, uid: 1000, gid: 100,
  });
  assert.equal((parse('type=cache,target=/c,readonly=false') as { readonly: boolean }).readonly, false);
});

test('secret mounts: the default target is /run/secrets/<id>, mode 0400; env= alone mounts no file', () => {
  assert.deepEqual(parse('type=secret,id=tok'), { type: 'secret', id: 'tok', target: '/run/secrets/tok', required: false, mode: 0o400, uid: 0, gid: 0 });
  assert.deepEqual(parse('type=secret,id=tok,env=TOKEN'), { type: 'secret', id: 'tok', env: 'TOKEN', required: false, mode: 0o400, uid: 0, gid: 0 });
  assert.deepEqual(parse('type=secret,target=/etc/k.pem,required=true,mode=0440,uid=1,gid=2'), { type: 'secret', id: 'k.pem', target: '/etc/k.pem', required: true, mode: 0o440, uid: 1, gid: 2 });
  assert.equal((parse('type=secret,id=a,required') as { required: boolean }).required, true);
});

test('bind, tmpfs and ssh mounts', () => {
  assert.deepEqual(parse('target=/src'), { type: 'bind', target: '/src', source: '/', rw: false });
  assert.deepEqual(parse('type=bind,from=build,source=/out/app,target=/usr/bin/app,rw'), { type: 'bind', target: '/usr/bin/app', from: 'build', source: '/out/app', rw: true });
  assert.deepEqual(parse('type=tmpfs,target=/t,size=64m'), { type: 'tmpfs', target: '/t', size: 64 * 1024 * 1024 });
  assert.deepEqual(parseRunMount('type=ssh', '/', 1, fail), { type: 'ssh', id: 'default', target: '/run/buildkit/ssh_agent.1', required: false, mode: 0o600, uid: 0, gid: 0 });
});

test('targets are normalized and relative ones are under the working directory', () => {
  assert.equal((parse('type=tmpfs,target=../x/./y', '/a/b') as { target: string }).target, '/a/x/y');
  assert.equal((parse('type=tmpfs,target=/../../etc') as { target: string }).target, '/etc');
  assert.throws(() => parse('type=tmpfs,target=/'), /cannot be \//);
});

test('fields: quotes keep commas', () => {
  assert.deepEqual(mountFields('type=cache,"target=/a,b",id=x'), ['type=cache', 'target=/a,b', 'id=x']);
});

const BAD: Array<[string, RegExp]> = [
  ['type=cache,target=/c,frobnicate=1', /type=cache does not take the option "frobnicate"/],
  ['type=tmpfs,target=/t,from=x', /type=tmpfs does not take the option "from"/],
  ['type=secret,id=a,size=1', /type=secret does not take the option "size"/],
  ['type=nfs,target=/x', /unsupported mount type "nfs"/],
  ['type=cache,target=/c,sharing=sometimes', /invalid sharing "sometimes"/],
  ['type=cache,target=/c,mode=rwx', /invalid mode "rwx"/],
  ['type=cache,target=/c,uid=-1', /invalid uid "-1"/],
  ['type=cache', /type=cache needs a target/],
  ['type=bind,source=/x', /type=bind needs a target/],
  ['type=secret', /needs an id/],
  ['type=secret,id=a,env=1BAD', /invalid env "1BAD"/],
  ['type=tmpfs,target=/t,size=lots', /invalid size "lots"/],
  ['type=cache,target=/a,target=/b', /given twice/],
  ['type=cache,target', /needs a value/],
  ['type=bind,target=/a,rw=maybe', /invalid value for rw/],
];
for (const [spec, re] of BAD) test(`refused: --mount=${spec}`, () => assert.throws(() => parse(spec), re));

test('RUN --mount and --security errors name the Dockerfile line, before anything runs', () => {
  const at = (text: string): SlipwayError => {
    try {
      parseDockerfile(text);
    } catch (e) {
      return e as SlipwayError;
    }
    throw new Error('no error');
  };
  const e = at('FROM busybox\n\nRUN --mount=type=cache,target=/c,bogus=1 true\n');
  assert.match(e.message, /^Dockerfile:3: RUN --mount: type=cache does not take the option "bogus"/);
  assert.equal(e.code, 'ERR_DOCKERFILE_SYNTAX');
  assert.match(at('FROM busybox\nRUN --mount=type=weird true\n').message, /^Dockerfile:2: .*unsupported mount type "weird"/);
  assert.match(at('FROM busybox\nRUN --security=privileged true\n').message, /^Dockerfile:2: RUN --security: unsupported value "privileged"/);
  const ok = parseDockerfile('FROM busybox\nRUN --mount=type=cache,target=$DIR --security=insecure --mount=type=tmpfs,target=/t true\n');
  const run = ok.steps[1]!;
  assert.ok(run.kind === 'RUN');
  assert.deepEqual(run.mounts, ['type=cache,target=$DIR', 'type=tmpfs,target=/t']);
  assert.equal(run.security, 'insecure');
  assert.equal(parseSecurity(undefined, fail), 'sandbox');
});

function step(over: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    rootfs: '/run/slipway/rootfs', argv: ['/bin/sh'], env: [], cwd: '/', uid: 0, gid: 0, groups: [], hostname: 'h', terminal: false, network: 'none',
    join: { user: '/ns/user', network: '/ns/net' }, etc: { hosts: '/f/hosts', hostname: '/f/hostname', resolvConf: '/f/resolv.conf' }, ...over,
  };
}

test('oci spec: RUN --mount binds and tmpfs come after the standard mounts', () => {
  const s = ociSpec(step({ extraMounts: [
    { kind: 'bind', target: '/cache', source: '/run/slipway/m0', readonly: false },
    { kind: 'bind', target: '/run/secrets/a', source: '/run/slipway/m1', readonly: true },
    { kind: 'tmpfs', target: '/t', size: 1024 },
  ] }));
  assert.deepEqual(s.mounts.slice(-3), [
    { destination: '/cache', type: 'bind', source: '/run/slipway/m0', options: ['rbind', 'rprivate', 'nosuid', 'nodev'] },
    { destination: '/run/secrets/a', type: 'bind', source: '/run/slipway/m1', options: ['rbind', 'rprivate', 'nosuid', 'nodev', 'ro'] },
    { destination: '/t', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', 'size=1024'] },
  ]);
  assert.equal(ociSpec(step()).mounts.length, 9);
});

test('oci spec: --security=insecure gives every capability, no seccomp, no masked or read-only paths', () => {
  const s = ociSpec(step({ insecure: true }));
  assert.equal(s.process.capabilities.bounding.length, ALL_CAPABILITIES.length);
  assert.ok(s.process.capabilities.effective.includes('CAP_SYS_ADMIN'));
  assert.equal(s.linux.seccomp, undefined);
  assert.deepEqual([s.linux.maskedPaths, s.linux.readonlyPaths], [[], []]);
  const plain = ociSpec(step());
  assert.ok(plain.linux.seccomp !== undefined && !plain.process.capabilities.effective.includes('CAP_SYS_ADMIN'));
});
