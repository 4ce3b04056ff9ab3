/**
 * The network daemon (native/netd.c) behind the default network: it runs as nobody with no
 * capabilities, serves only root peers (the shim), gives every tap it is handed a stack of its
 * own, is never shared between domains (stores), and is gone with the process that started it,
 * even after kill -9.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { netdName, stopNetd } from '../../src/sandbox/netd.js';
import { makeContext, storeWithBusybox, processesMentioning } from '../support/cli.js';
import { buildProbe, canBuildStatic } from '../support/probe.js';
import { waitFor } from '../support/engine-api.js';

const skip = process.getuid?.() !== 0 ? 'needs root' : !canBuildStatic() ? 'needs gcc -static' : false;

/** Connects to the abstract socket argv[1], hands over an fd of /dev/null, prints the answer or "refused". */
const PEER = String.raw`
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
int main(int argc, char **argv) {
  if (argc < 2) return 2;
  int c = socket(AF_UNIX, SOCK_STREAM, 0), fd = open("/dev/null", O_RDWR);
  struct sockaddr_un a; memset(&a, 0, sizeof a); a.sun_family = AF_UNIX;
  size_t len = strlen(argv[1]); memcpy(a.sun_path + 1, argv[1], len);
  if (connect(c, (struct sockaddr *)&a, offsetof(struct sockaddr_un, sun_path) + 1 + len) < 0) { puts("no-connect"); return 1; }
  char b = 't', ctrl[CMSG_SPACE(sizeof(int))]; memset(ctrl, 0, sizeof ctrl);
  struct iovec iov = { &b, 1 };
  struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl, .msg_controllen = sizeof ctrl };
  struct cmsghdr *h = CMSG_FIRSTHDR(&m); h->cmsg_level = SOL_SOCKET; h->cmsg_type = SCM_RIGHTS; h->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(h), &fd, sizeof fd);
  sendmsg(c, &m, MSG_NOSIGNAL);
  char r = 0;
  puts(read(c, &r, 1) == 1 && r == 'k' ? "k" : "refused");
  return 0;
}
`;

/** The daemon processes named `name`, with their Uid line and effective capabilities. */
async function daemons(name: string): Promise<{ pid: number; uid: string; capEff: string; seccomp: string }[]> {
  const found = [];
  for (const l of await processesMentioning(name)) {
    const pid = Number(l.split(':')[0]);
    const status = await fs.readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    if (!/^Name:\s+slipway-netd$/m.test(status)) continue;
    found.push({ pid, uid: /^Uid:\s+(.*)$/m.exec(status)?.[1] ?? '', capEff: /^CapEff:\s+(\S+)$/m.exec(status)?.[1] ?? '', seccomp: /^Seccomp:\s+(\S+)$/m.exec(status)?.[1] ?? '' });
  }
  return found.filter((d) => d.uid !== '');
}

test('the daemon runs as nobody with no capabilities under seccomp and serves only root peers; each domain has its own', { skip }, async () => {
  const name = await netdName('a-store');
  try {
    assert.equal(await netdName('a-store'), name, 'one daemon per domain');
    const other = await netdName('another-store');
    assert.notEqual(other, name, 'another domain (another tenant\'s store) gets another daemon');
    assert.equal((await daemons(other)).length, 1);
    const [d] = await daemons(name);
    assert.ok(d, 'the daemon is running');
    assert.equal(d.uid, '65534\t65534\t65534\t65534');
    assert.equal(d.capEff, '0000000000000000');
    assert.equal(d.seccomp, '2', 'under a seccomp filter');
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-netd-peer-'));
    await buildProbe(dir, 'peer', PEER);
    const peer = path.join(dir, 'peer');
    assert.equal(execFileSync(peer, [name], { encoding: 'utf8' }).trim(), 'k', 'root gets a network');
    await fs.chmod(dir, 0o755);
    assert.equal(execFileSync(peer, [name], { encoding: 'utf8', uid: 65534, gid: 65534 }).trim(), 'refused', 'another uid is refused');
    await fs.rm(dir, { recursive: true, force: true });
  } finally {
    stopNetd();
  }
  assert.ok(await waitFor(async () => (await daemons(name)).length === 0, 5000), 'stopNetd stops them');
});

test('steps share the daemon, each with its own network, and it dies with a build killed by SIGKILL', { skip }, async () => {
  const root = await storeWithBusybox();
  // Each step sees only its own tap; the MAC differs per step: the namespaces are not reused.
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN cat /sys/class/net/tap0/address > /m1 && ip -o addr show tap0\n'
    + 'RUN cat /sys/class/net/tap0/address > /m2 && test "$(cat /m1)" != "$(cat /m2)" && echo DIFFERENT-MAC\nRUN echo started && sleep 30\n' });
  const { CLI } = await import('../support/cli.js');
  const child = spawn(process.execPath, [CLI, '--root', root, 'build', ctx], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  await new Promise<void>((resolve) => child.stdout!.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('started')) resolve(); }));
  assert.match(out, /tap0 +inet 10\.0\.2\.100\/24/);
  assert.match(out, /^DIFFERENT-MAC$/m);
  const mine = `slipway-netd-${child.pid}-`;
  assert.ok((await daemons(mine)).length >= 1, 'a daemon of the build serves it');
  child.kill('SIGKILL');
  assert.ok(await waitFor(async () => (await daemons(mine)).length === 0, 5000), 'the daemon is gone with the build');
  await fs.rm(root, { recursive: true, force: true });
});
