/** The sandbox's plain-data pieces: limit flags, ceilings, cgroup files, id ranges, resolv.conf. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { formatBytes, limitMessage, parseAllow, parseBytes, parseDuration, parseNetwork, sandboxFromFlags, withinCeilings } from '../../src/sandbox/limits.js';
import { counter, limitFiles, parseCgroupLayout } from '../../src/sandbox/cgroups.js';
import { DEFAULT_MAPPING, hostIdMapping, subidRange } from '../../src/sandbox/userns.js';
import { hostsFile, resolvConf } from '../../src/sandbox/etc-files.js';
import { hostOwner, shiftOwnersBack, shiftOwnersForward } from '../../src/sandbox/shift-owners.js';
import { packLayer } from '../../src/snapshot/pack.js';

test("sizes and durations in Docker's forms", () => {
  for (const [v, n] of [['512m', 512 * 1024 ** 2], ['1g', 1024 ** 3], ['1.5G', 1.5 * 1024 ** 3], ['64mb', 64 * 1024 ** 2], ['1048576', 1048576], ['10k', 10240]] as const) {
    assert.equal(parseBytes(v, 'memory'), n, v);
  }
  for (const bad of ['', 'lots', '5x', '-1m']) assert.throws(() => parseBytes(bad, 'memory'), /invalid argument/);
  for (const [v, ms] of [['90s', 90_000], ['10m', 600_000], ['1h30m', 5_400_000], ['1500ms', 1500], ['2', 2000], ['0.5', 500]] as const) {
    assert.equal(parseDuration(v, 'step-timeout'), ms, v);
  }
  for (const bad of ['', 'soon', '5 s', '1d']) assert.throws(() => parseDuration(bad, 'step-timeout'), /invalid duration/);
  assert.equal(formatBytes(64 * 1024 ** 2), '64MiB');
  assert.equal(formatBytes(1.5 * 1024 ** 3), '1.5GiB');
});

test("limit flags follow Docker's rules", () => {
  assert.deepEqual(sandboxFromFlags({ memory: '64m' }).limits, { memory: 64 * 1024 ** 2, memorySwap: 128 * 1024 ** 2 });
  assert.deepEqual(sandboxFromFlags({ memory: '64m', 'memory-swap': '-1' }).limits, { memory: 64 * 1024 ** 2, memorySwap: -1 });
  assert.throws(() => sandboxFromFlags({ memory: '64m', 'memory-swap': '32m' }), /larger than memory limit/);
  assert.throws(() => sandboxFromFlags({ 'memory-swap': '1g' }), /always set the Memory limit/);
  assert.throws(() => sandboxFromFlags({ memory: '4m' }), /Minimum memory limit allowed is 6MB/);
  assert.deepEqual(sandboxFromFlags({ 'cpu-shares': '512', 'cpu-period': '100000', 'cpu-quota': '50000', 'cpuset-cpus': '0-1', 'pids-limit': '64' }).limits,
    { cpuShares: 512, cpuPeriod: 100000, cpuQuota: 50000, cpusetCpus: '0-1', pids: 64 });
  assert.throws(() => sandboxFromFlags({ 'cpuset-cpus': 'all' }), /cpuset-cpus/);
  assert.throws(() => sandboxFromFlags({ 'cpu-quota': '10' }), /between 1000/);
  assert.deepEqual(sandboxFromFlags({ 'step-timeout': '30s', runtime: 'runc', userns: 'host' }), { limits: {}, timeoutMs: 30_000, runtime: 'runc', userns: 'host' });
  assert.throws(() => sandboxFromFlags({ userns: 'remap' }), /private \(the default\) or host/);
});

test("a server's values are the defaults and the ceilings", () => {
  const server = { limits: { memory: 512 * 1024 ** 2, pids: 256 }, timeoutMs: 60_000 };
  assert.deepEqual(withinCeilings({ limits: {} }, server), { limits: { memory: 512 * 1024 ** 2, pids: 256 }, timeoutMs: 60_000 });
  assert.deepEqual(withinCeilings({ limits: { memory: 64 * 1024 ** 2, pids: 100 }, timeoutMs: 5000 }, server).limits, { memory: 64 * 1024 ** 2, pids: 100 });
  assert.equal(withinCeilings({ limits: {}, timeoutMs: 120_000 }, server).timeoutMs, 60_000, 'a longer timeout is cut to the server\'s');
  assert.throws(() => withinCeilings({ limits: { memory: 1024 ** 3 } }, server), /--memory .* above this server's limit/);
  assert.throws(() => withinCeilings({ limits: { pids: -1 } }, server), /--pids-limit -1 is above/);
  assert.throws(() => withinCeilings({ limits: { pids: 2000 } }, { limits: {} }), /above this server's limit of 1024/, 'the default pids limit is a ceiling too');
  assert.throws(() => withinCeilings({ limits: {}, userns: 'host' }, server), /not allowed/);
});

test('entitlements and network modes', () => {
  assert.deepEqual(parseAllow(['network.host']), ['network.host']);
  assert.throws(() => parseAllow(['security.everything']), /unknown entitlement/);
  assert.deepEqual(['default', 'bridge', '', undefined, 'none', 'host'].map((v) => parseNetwork(v)), ['default', 'default', 'default', 'default', 'none', 'host']);
  assert.throws(() => parseNetwork('container:x'), /unsupported network mode/);
});

test('limit messages name the limit and its flag', () => {
  const o = { limits: { memory: 64 * 1024 ** 2, pids: 200 }, timeoutMs: 2000 };
  assert.equal(limitMessage(['memory'], o), 'killed: out of memory under the memory limit of 64MiB (--memory)');
  assert.equal(limitMessage(['timeout', 'pids'], o), 'killed: it ran longer than the step timeout of 2s (--step-timeout); it reached the limit of 200 processes (--pids-limit)');
});

const HYBRID = `30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
33 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw`;

test('cgroup layout: v1 controllers where mounted, v2 for the rest', () => {
  const hybrid = parseCgroupLayout(HYBRID, () => ['hugetlb']);
  assert.deepEqual(hybrid.controllers, {
    cpu: { version: 1, mount: '/sys/fs/cgroup/cpu,cpuacct' }, cpuset: { version: 1, mount: '/sys/fs/cgroup/cpuset' },
    memory: { version: 1, mount: '/sys/fs/cgroup/memory' }, pids: { version: 1, mount: '/sys/fs/cgroup/pids' },
  });
  assert.equal(hybrid.unified, '/sys/fs/cgroup/unified');
  assert.equal(hybrid.all.length, 5);
  const v2 = parseCgroupLayout('25 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate', () => ['cpuset', 'cpu', 'io', 'memory', 'pids']);
  assert.deepEqual(Object.values(v2.controllers).map((p) => p.version), [2, 2, 2, 2]);
});

test('cgroup files for v1 and v2', () => {
  const l = { memory: 64 * 1024 ** 2, memorySwap: 128 * 1024 ** 2, pids: 100, cpuShares: 512, cpuPeriod: 100000, cpuQuota: 50000, cpusetCpus: '0' };
  const all = ['memory', 'pids', 'cpu', 'cpuset'] as const;
  assert.deepEqual(limitFiles(1, [...all], l), [
    ['memory.limit_in_bytes', '67108864'], ['memory.memsw.limit_in_bytes', '134217728'], ['pids.max', '100'],
    ['cpu.shares', '512'], ['cpu.cfs_period_us', '100000'], ['cpu.cfs_quota_us', '50000'], ['cpuset.cpus', '0'],
  ]);
  assert.deepEqual(limitFiles(2, [...all], l), [
    ['memory.max', '67108864'], ['memory.swap.max', '67108864'], ['pids.max', '100'], ['cpu.weight', '20'], ['cpu.max', '50000 100000'], ['cpuset.cpus', '0'],
  ]);
  assert.deepEqual(limitFiles(2, ['memory'], { memory: 1 << 30, memorySwap: -1 }), [['memory.max', String(1 << 30)], ['memory.swap.max', 'max']]);
  assert.deepEqual(limitFiles(1, ['pids'], l), [['pids.max', '100']], 'only the hierarchy\'s own controllers');
  assert.equal(counter('oom_kill_disable 0\nunder_oom 0\noom_kill 2\n', 'oom_kill'), 2);
  assert.equal(counter('max 0\n', 'max'), 0);
  assert.equal(counter('', 'max'), 0);
});

test('the id range: the slipway line of /etc/subuid and /etc/subgid, else the default', () => {
  assert.deepEqual(subidRange('alice:100000:65536\nslipway:300000:65536\n', 'slipway'), { host: 300000, count: 65536 });
  assert.equal(subidRange('slipwayx:1:2\n', 'slipway'), undefined);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-subid-'));
  const files = { subuid: path.join(dir, 'subuid'), subgid: path.join(dir, 'subgid') };
  assert.deepEqual(hostIdMapping(files), DEFAULT_MAPPING, 'no files: the default');
  fs.writeFileSync(files.subuid, 'slipway:200000:65536\n');
  assert.throws(() => hostIdMapping(files), /must both have/);
  fs.writeFileSync(files.subgid, 'slipway:400000:70000\n');
  assert.deepEqual(hostIdMapping(files), { uid: { host: 200000, count: 65536 }, gid: { host: 400000, count: 65536 } });
  fs.writeFileSync(files.subgid, 'slipway:400000:1000\n');
  assert.throws(() => hostIdMapping(files), /steps need 65536/);
  fs.rmSync(dir, { recursive: true });
});

test('owners shift into the range and back, set-id bits kept; ids outside the range stay', () => {
  const m = { uid: { host: 200000, count: 65536 }, gid: { host: 300000, count: 65536 } };
  assert.deepEqual(hostOwner(m, 0, 0), { uid: 200000, gid: 300000 });
  assert.deepEqual(hostOwner(undefined, 5, 6), { uid: 5, gid: 6 });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-shift-'));
  fs.mkdirSync(path.join(dir, 'd'));
  fs.writeFileSync(path.join(dir, 'd/suid'), '');
  fs.chmodSync(path.join(dir, 'd/suid'), 0o4755);
  fs.symlinkSync('suid', path.join(dir, 'd/link'));
  fs.chownSync(path.join(dir, 'd'), 1000, 1000);
  shiftOwnersForward(dir, m);
  const st = (p: string) => fs.lstatSync(path.join(dir, p));
  assert.deepEqual([st('').uid, st('').gid, st('d').uid, st('d').gid, st('d/link').uid], [200000, 300000, 201000, 301000, 200000]);
  fs.lchownSync(path.join(dir, 'd/link'), 0, 0); // outside the range, as a whiteout the kernel made would be
  shiftOwnersBack(dir, m);
  assert.deepEqual([st('').uid, st('d').uid, st('d').gid, st('d/suid').uid, st('d/link').uid], [0, 1000, 1000, 0, 0]);
  assert.equal(st('d/suid').mode & 0o7777, 0o4755, 'chown cleared setuid; it is put back');
  fs.rmSync(dir, { recursive: true });
});

test('pack maps a RUN layer\'s owners back in its own walk: the same disk and the same tar as shifting first', async () => {
  const m = { uid: { host: 200000, count: 65536 }, gid: { host: 300000, count: 65536 } };
  const make = (): string => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-shiftpack-'));
    fs.mkdirSync(path.join(dir, 'd'));
    fs.writeFileSync(path.join(dir, 'd/suid'), 'x');
    fs.chmodSync(path.join(dir, 'd/suid'), 0o4755);
    fs.writeFileSync(path.join(dir, 'd/h1'), 'h');
    fs.linkSync(path.join(dir, 'd/h1'), path.join(dir, 'h2'));
    fs.symlinkSync('suid', path.join(dir, 'd/link'));
    fs.chownSync(path.join(dir, 'd'), 1000, 1000);
    for (const p of ['', 'd', 'd/suid', 'd/h1', 'd/link']) fs.utimesSync(path.join(dir, p), 1e9, 1e9);
    shiftOwnersForward(dir, m);
    fs.lchownSync(path.join(dir, 'd/link'), 0, 0); // outside the range, as a whiteout the kernel made would be
    return dir;
  };
  const a = make();
  const b = make();
  shiftOwnersBack(a, m);
  const shiftedFirst = await packLayer(a, null);
  const inOneWalk = await packLayer(b, null, { ownersBack: m });
  assert.equal(inOneWalk.diffId, shiftedFirst.diffId, 'the same tar');
  const st = (dir: string, p: string) => fs.lstatSync(path.join(dir, p));
  for (const p of ['', 'd', 'd/suid', 'd/h1', 'h2', 'd/link']) {
    assert.deepEqual([st(b, p).uid, st(b, p).gid, st(b, p).mode], [st(a, p).uid, st(a, p).gid, st(a, p).mode], p);
  }
  assert.deepEqual([st(b, '').uid, st(b, 'd').uid, st(b, 'd/suid').uid, st(b, 'd/suid').mode & 0o7777], [0, 1000, 0, 0o4755]);
  const noShift = await packLayer(make(), null);
  assert.notEqual(noShift.diffId, inOneWalk.diffId, 'host owners would give another tar');
  for (const d of [a, b]) fs.rmSync(d, { recursive: true });
});

test('resolv.conf and hosts of a step', () => {
  const host = 'nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch example.org\n';
  assert.equal(resolvConf(host, 'default'), 'nameserver 10.0.2.3\noptions edns0 trust-ad\nsearch example.org\n');
  assert.equal(resolvConf(host, 'host'), host);
  assert.equal(hostsFile('abc'), '127.0.0.1\tlocalhost abc\n::1\tlocalhost ip6-localhost ip6-loopback\n');
});

test('the runtime: crun first, runc where crun is missing, --runtime overrides; a missing one names its package', async () => {
  const { findRuntime, runtimeArgv } = await import('../../src/sandbox/runtime.js');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-rt-'));
  const bin = (name: string) => {
    fs.writeFileSync(path.join(dir, name), '#!/bin/sh\n');
    fs.chmodSync(path.join(dir, name), 0o755);
  };
  assert.throws(() => findRuntime(undefined, [dir]), /crun is not installed .*apt-get install crun/);
  bin('runc');
  assert.deepEqual(findRuntime(undefined, [dir]), { kind: 'runc', path: path.join(dir, 'runc') });
  bin('crun');
  const both = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-rt-'));
  fs.copyFileSync(path.join(dir, 'crun'), path.join(both, 'crun'));
  fs.chmodSync(path.join(both, 'crun'), 0o755);
  fs.copyFileSync(path.join(dir, 'runc'), path.join(both, 'runc'));
  fs.chmodSync(path.join(both, 'runc'), 0o755);
  assert.equal(findRuntime(undefined, [both]).kind, 'crun');
  assert.deepEqual(findRuntime(path.join(dir, 'runc')), { kind: 'runc', path: path.join(dir, 'runc') });
  assert.throws(() => findRuntime('/no/such/runtime'), /OCI runtime not found/);
  const o = { stateDir: '/s', bundle: '/b', id: 'x', logFile: '/l' };
  assert.deepEqual(runtimeArgv({ kind: 'crun', path: '/c' }, o), ['/c', '--cgroup-manager=disabled', '--root=/s', '--log=/l', '--log-format=json', 'run', '--bundle', '/b', 'x']);
  assert.deepEqual(runtimeArgv({ kind: 'runc', path: '/r' }, o), ['/r', '--root=/s', '--log=/l', '--log-format=json', 'run', '--bundle', '/b', 'x']);
  fs.rmSync(dir, { recursive: true });
  fs.rmSync(both, { recursive: true });
});
