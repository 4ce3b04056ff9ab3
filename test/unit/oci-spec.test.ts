import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ociSpec, DOCKER_DEFAULT_CAPABILITIES, type ContainerSpec } from '../../src/sandbox/oci-spec.js';
import { ALLOWED_SYSCALLS, defaultSeccompProfile } from '../../src/sandbox/seccomp.js';

/** The spec a plain RUN step gets; tests override what they look at. */
function step(over: Partial<ContainerSpec> = {}): ContainerSpec {
  return {
    rootfs: '/run/slipway/rootfs', argv: ['/bin/sh', '-c', 'true'], env: ['PATH=/bin'], cwd: '/', uid: 0, gid: 0, groups: [],
    hostname: 'abcdef012345', terminal: false, network: 'default',
    join: { user: '/ns/user', network: '/ns/net' },
    idMappings: { uid: { host: 1_000_000_000, count: 65536 }, gid: { host: 1_000_000_000, count: 65536 } },
    etc: { hosts: '/f/hosts', hostname: '/f/hostname', resolvConf: '/f/resolv.conf' },
    ...over,
  };
}

test("Docker's default capabilities, held in bounding, effective and permitted; none inheritable or ambient", () => {
  const caps = ociSpec(step()).process.capabilities;
  const expected = ['AUDIT_WRITE', 'CHOWN', 'DAC_OVERRIDE', 'FOWNER', 'FSETID', 'KILL', 'MKNOD', 'NET_BIND_SERVICE', 'NET_RAW', 'SETFCAP', 'SETGID', 'SETPCAP', 'SETUID', 'SYS_CHROOT'].map((c) => `CAP_${c}`);
  for (const set of ['bounding', 'effective', 'permitted'] as const) assert.deepEqual([...caps[set]].sort(), expected);
  assert.deepEqual(Object.keys(caps).sort(), ['bounding', 'effective', 'permitted']);
  assert.equal(DOCKER_DEFAULT_CAPABILITIES.length, 14);
  assert.ok(!expected.includes('CAP_SYS_ADMIN') && !expected.includes('CAP_NET_ADMIN') && !expected.includes('CAP_SYS_PTRACE'));
});

test('namespaces: pid, ipc, uts and mount of its own; user and network joined by path', () => {
  assert.deepEqual(ociSpec(step()).linux.namespaces, [
    { type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'user', path: '/ns/user' }, { type: 'network', path: '/ns/net' },
  ]);
  const host = ociSpec(step({ network: 'host', join: { user: '/ns/user' } }));
  assert.equal(host.linux.namespaces.some((n) => n.type === 'network'), false, 'the host network: no network namespace');
  const noUserns = ociSpec(step({ join: { network: '/ns/net' } }));
  assert.equal(noUserns.linux.namespaces.some((n) => n.type === 'user'), false);
  assert.equal(noUserns.linux.uidMappings, undefined);
  assert.throws(() => ociSpec(step({ join: { user: '/ns/user' } })), /needs its network namespace/);
});

test('the user namespace mapping is stated (runc needs it even when joining)', () => {
  const s = ociSpec(step());
  assert.deepEqual(s.linux.uidMappings, [{ containerID: 0, hostID: 1_000_000_000, size: 65536 }]);
  assert.deepEqual(s.linux.gidMappings, [{ containerID: 0, hostID: 1_000_000_000, size: 65536 }]);
});

test("Docker's masked and read-only paths hide the host kernel's knobs", () => {
  const l = ociSpec(step()).linux;
  for (const p of ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/proc/sched_debug', '/proc/acpi', '/sys/firmware']) assert.ok(l.maskedPaths.includes(p), p);
  for (const p of ['/proc/sys', '/proc/sysrq-trigger', '/proc/irq', '/proc/bus', '/proc/fs']) assert.ok(l.readonlyPaths.includes(p), p);
});

test('a minimal /dev with pts and shm; /etc files bound; /sys read-only', () => {
  const s = ociSpec(step({ shmSize: 1 << 20 }));
  assert.deepEqual(s.linux.devices.map((d) => d.path), ['/dev/null', '/dev/zero', '/dev/full', '/dev/random', '/dev/urandom', '/dev/tty']);
  const byDest = new Map(s.mounts.map((m) => [m.destination, m]));
  assert.equal(byDest.get('/dev/pts')?.type, 'devpts');
  assert.ok(byDest.get('/dev/pts')?.options?.includes('newinstance'));
  assert.ok(byDest.get('/dev/shm')?.options?.includes(`size=${1 << 20}`));
  assert.deepEqual(['/etc/hosts', '/etc/hostname', '/etc/resolv.conf'].map((d) => byDest.get(d)?.source), ['/f/hosts', '/f/hostname', '/f/resolv.conf']);
  assert.equal(byDest.get('/sys')?.type, 'sysfs');
  assert.ok(byDest.get('/sys')?.options?.includes('ro'));
  const hostNet = new Map(ociSpec(step({ network: 'host', join: { user: '/ns/user' } })).mounts.map((m) => [m.destination, m]));
  assert.deepEqual([hostNet.get('/sys')?.type, hostNet.get('/sys')?.options?.includes('ro')], ['bind', true], 'sysfs cannot be mounted without owning the network');
  const rules = s.linux.resources.devices;
  assert.deepEqual(rules[0], { allow: false, access: 'rwm' }, 'the device cgroup denies first');
});

test('the process: argv, env, cwd, user and groups as given; a terminal only when asked', () => {
  const p = ociSpec(step({ uid: 1000, gid: 100, groups: [100, 10], cwd: '/app' })).process;
  assert.deepEqual([p.args, p.env, p.cwd, p.user], [['/bin/sh', '-c', 'true'], ['PATH=/bin'], '/app', { uid: 1000, gid: 100, additionalGids: [100, 10] }]);
  assert.equal(p.terminal, false);
  assert.equal(p.consoleSize, undefined);
  const t = ociSpec(step({ terminal: true, consoleSize: { height: 25, width: 80 } })).process;
  assert.deepEqual([t.terminal, t.consoleSize], [true, { height: 25, width: 80 }]);
  assert.equal(p.noNewPrivileges, false);
});

test('pure: the same step gives the same spec, and the input is not shared or changed', () => {
  const input = step();
  const a = ociSpec(input);
  const b = ociSpec(input);
  assert.deepEqual(a, b);
  a.process.args.push('x');
  a.linux.seccomp!.syscalls[0]!.names.push('mount');
  assert.deepEqual(input.argv, ['/bin/sh', '-c', 'true']);
  assert.ok(!ociSpec(input).linux.seccomp!.syscalls[0]!.names.includes('mount'));
});

test('seccomp: an allowlist, everything else EPERM', () => {
  const p = defaultSeccompProfile();
  assert.equal(p.defaultAction, 'SCMP_ACT_ERRNO');
  assert.equal(p.defaultErrnoRet, 1);
  assert.deepEqual(p.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  const blocked = ['mount', 'umount2', 'pivot_root', 'unshare', 'setns', 'bpf', 'keyctl', 'add_key', 'request_key', 'init_module',
    'finit_module', 'delete_module', 'kexec_load', 'kexec_file_load', 'open_by_handle_at', 'name_to_handle_at', 'reboot', 'swapon',
    'swapoff', 'acct', 'settimeofday', 'clock_settime', 'perf_event_open', 'userfaultfd', 'fsopen', 'fsmount', 'move_mount',
    'open_tree', 'mount_setattr', 'iopl', 'ioperm', 'io_uring_setup', 'syslog', 'kcmp', 'pidfd_getfd', 'quotactl', 'lookup_dcookie'];
  for (const name of blocked) {
    assert.ok(!ALLOWED_SYSCALLS.includes(name), `${name} must not be allowed`);
    assert.ok(!p.syscalls.some((r) => r.names.includes(name) && r.action === 'SCMP_ACT_ALLOW'), name);
  }
  for (const name of ['read', 'write', 'execve', 'openat', 'clone', 'fork', 'chroot', 'setuid', 'socket', 'futex', 'wait4', 'statx']) {
    assert.ok(p.syscalls.some((r) => r.names.includes(name) && r.action === 'SCMP_ACT_ALLOW'), name);
  }
  assert.equal(new Set(ALLOWED_SYSCALLS).size, ALLOWED_SYSCALLS.length, 'no name twice');
});

test('seccomp: clone without namespace flags, socket without AF_VSOCK, personality limited, clone3 ENOSYS', () => {
  const rules = defaultSeccompProfile().syscalls;
  const clone = rules.find((r) => r.names.includes('clone'));
  assert.deepEqual(clone?.args, [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }]);
  const socket = rules.find((r) => r.names.includes('socket'));
  assert.deepEqual(socket?.args, [{ index: 0, value: 40, op: 'SCMP_CMP_NE' }]);
  const personas = rules.filter((r) => r.names.includes('personality')).map((r) => r.args?.[0]?.value);
  assert.deepEqual(personas, [0, 8, 0x20000, 0x20008, 0xffffffff]);
  assert.deepEqual(rules.find((r) => r.names.includes('clone3')), { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 });
  assert.equal(rules.filter((r) => r.names.includes('clone') || r.names.includes('socket')).every((r) => r.args !== undefined), true);
});

test('the profile compiles once into BPF for crun, in the line format the compiler reads', async () => {
  const { profileText, compiledSeccomp } = await import('../../src/sandbox/seccomp-bpf.js');
  const text = profileText(defaultSeccompProfile());
  const lines = text.trim().split('\n');
  assert.deepEqual(lines.slice(0, 4), ['default errno 1', 'arch x86_64', 'arch x86', 'arch x32']);
  assert.ok(lines.includes('allow read'));
  assert.ok(lines.includes('allow clone 0 masked_eq 2114060288 0'));
  assert.ok(lines.includes('allow socket 0 ne 40'));
  assert.ok(lines.includes('errno 38 clone3'));
  assert.ok(!lines.some((l) => / mount$/.test(l)));
  if (process.getuid?.() !== 0) return;
  const bpf = await compiledSeccomp(defaultSeccompProfile());
  assert.ok(bpf !== undefined, 'compiled (needs dist/native/slipway-seccomp)');
  const bytes = Buffer.from(bpf, 'base64');
  assert.ok(bytes.length > 800 && bytes.length % 8 === 0, `${bytes.length} bytes: whole sock_filter instructions`);
  assert.equal(await compiledSeccomp(defaultSeccompProfile()), bpf, 'the same program from the cache');
});
