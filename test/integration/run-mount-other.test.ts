/**
 * RUN --mount=type=bind, type=tmpfs and type=ssh, and RUN --security=insecure, through the CLI.
 * The ssh mount is tried with a real ssh-agent (openssh-client) and a static probe that asks it
 * for its identities over the forwarded socket.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { slipway, storeWithBusybox, makeContext } from '../support/cli.js';
import { buildProbe, canBuildStatic } from '../support/probe.js';

async function build(root: string, ctx: string, dockerfile: string, flags: string[] = []): Promise<{ code: number; out: string; err: string }> {
  await fs.writeFile(path.join(ctx, 'Dockerfile'), dockerfile);
  const r = await slipway(root, ['build', ...flags, ctx]);
  return { code: r.code, out: r.stdout, err: r.stderr };
}

test('bind mounts from the context: read-only by default, rw writes discarded, .dockerignore honoured, content in the key', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ 'a.txt': 'from-context\n', 'secret.env': 'hidden\n', '.dockerignore': 'secret.env\n', 'sub/b.txt': 'bee\n' });
  // The shell's message comes back through one pipe: stdout and stderr are two, whose relative order is lost.
  const df = 'FROM busybox\nRUN --mount=type=bind,target=/src sh -c \'cat /src/a.txt; ls /src; msg=$( (echo x > /src/new) 2>&1 ) || echo "refused: $msg"\'\n';
  const r = await build(root, ctx, df);
  assert.equal(r.code, 0, r.out + r.err);
  assert.match(r.out, /^from-context$/m);
  assert.doesNotMatch(r.out, /secret\.env/, '.dockerignore applies');
  assert.match(r.out, /^refused: .*Read-only file system$/m);
  assert.match((await build(root, ctx, df)).out, /Using cache/);
  await fs.writeFile(path.join(ctx, 'a.txt'), 'changed\n');
  const changed = await build(root, ctx, df);
  assert.doesNotMatch(changed.out, /Using cache/, 'a changed source is a cache miss');
  assert.match(changed.out, /^changed$/m);
  const rw = await build(root, ctx, 'FROM busybox\nRUN --mount=type=bind,source=sub,target=/s,rw sh -c "echo scribble > /s/b.txt; cat /s/b.txt"\nRUN --mount=type=bind,source=sub,target=/s cat /s/b.txt\n');
  assert.equal(rw.code, 0, rw.out + rw.err);
  assert.match(rw.out, /^scribble$/m);
  assert.match(rw.out, /^bee$/m, 'the next step sees the source as it was');
  assert.equal(await fs.readFile(path.join(ctx, 'sub/b.txt'), 'utf8'), 'bee\n', 'the context is untouched');
  const file = await build(root, ctx, 'FROM busybox\nRUN --mount=type=bind,source=a.txt,target=/etc/a.conf cat /etc/a.conf\n');
  assert.match(file.out, /^changed$/m, 'a single file');
});

test('bind mounts from a stage and from an image; the mount point is all the layer keeps', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({});
  const r = await build(root, ctx, [
    'FROM busybox AS build', 'RUN mkdir /out && echo built > /out/app && chmod 750 /out/app && chown 7:8 /out/app',
    'FROM busybox', 'RUN --mount=type=bind,from=build,source=/out,target=/in stat -c "%n %a %u %g" /in/app',
    'RUN --mount=type=bind,from=busybox,source=/bin/busybox,target=/usr/local/bin/busybox /usr/local/bin/busybox echo from-image',
  ].join('\n') + '\n', ['-q']);
  assert.equal(r.code, 0, r.err);
  const loud = await build(root, ctx, await fs.readFile(path.join(ctx, 'Dockerfile'), 'utf8'), ['--no-cache']);
  assert.match(loud.out, /^\/in\/app 750 7 8$/m, 'owners and modes of the stage');
  assert.match(loud.out, /^from-image$/m);
  const id = r.out.trim().replace('sha256:', '');
  const top = (await fs.readdir(path.join(root, 'graph', id, 'layer'), { recursive: true })).sort();
  assert.deepEqual(top, ['usr', 'usr/local', 'usr/local/bin', 'usr/local/bin/busybox']);
  assert.equal((await fs.stat(path.join(root, 'graph', id, 'layer', 'usr/local/bin/busybox'))).size, 0, 'an empty mount point');
});

test('bind sources stay inside their stage, image or context', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ 'ok.txt': 'ok\n' });
  await fs.symlink('/etc', path.join(ctx, 'hostetc'));
  const up = await build(root, ctx, 'FROM busybox\nRUN --mount=type=bind,source=../../../../../etc/debian_version,target=/x cat /x\n');
  assert.notEqual(up.code, 0);
  assert.equal(up.err.trim(), 'Error: Dockerfile:2: RUN --mount: source ../../../../../etc/debian_version not found in the build context');
  const link = await build(root, ctx, 'FROM busybox\nRUN --mount=type=bind,source=hostetc/debian_version,target=/x cat /x\n');
  assert.match(link.err, /source hostetc\/debian_version not found in the build context/, 'a symlink to /etc resolves inside the context');
  const stage = await build(root, ctx, 'FROM busybox AS s\nRUN ln -s /etc/debian_version /dv && ln -s ../../../../etc/debian_version /dv2\nFROM busybox\nRUN --mount=type=bind,from=s,source=/dv2,target=/x cat /x\n');
  assert.notEqual(stage.code, 0, 'the host\'s /etc/debian_version is not the stage\'s');
  assert.match(stage.err, /source \/dv2 not found in "[0-9a-f]{12}"/);
  assert.match((await build(root, ctx, 'FROM busybox\nRUN --mount=type=bind,from=nosuchstage,target=/x true\n')).err, /Dockerfile:2: invalid from flag value nosuchstage/);
});

test('tmpfs mounts: the size is honoured and nothing written there is kept', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({});
  const r = await build(root, ctx, 'FROM busybox\nRUN --mount=type=tmpfs,target=/scratch,size=2m sh -c "df -k /scratch | tail -1; echo x > /scratch/f"\nRUN ls -A /scratch | wc -l\n');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^tmpfs\s+2048\s/m);
  assert.match(r.out, /^0$/m, 'the next step sees an empty mount point');
});

const AGENT_PROBE = String.raw`
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
int main(int argc, char **argv) {
  const char *p = argc > 1 ? argv[1] : getenv("SSH_AUTH_SOCK");
  if (!p) { printf("no SSH_AUTH_SOCK\n"); return 1; }
  int s = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a; memset(&a, 0, sizeof a); a.sun_family = AF_UNIX; strncpy(a.sun_path, p, sizeof a.sun_path - 1);
  if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); return 2; }
  unsigned char req[5] = {0, 0, 0, 1, 11}, buf[9];
  if (write(s, req, 5) != 5) return 3;
  size_t got = 0; while (got < 9) { ssize_t n = read(s, buf + got, 9 - got); if (n <= 0) return 4; got += (size_t)n; }
  if (buf[4] != 12) { printf("unexpected answer %d\n", buf[4]); return 5; }
  printf("agent keys %u\n", (buf[5] << 24) | (buf[6] << 16) | (buf[7] << 8) | buf[8]);
  return 0;
}`;

test('ssh mounts forward an ssh-agent (a socket, or key files) into the step that asks, and no other', { skip: !canBuildStatic() }, async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({});
  await buildProbe(ctx, 'agentprobe', AGENT_PROBE);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-ssh-test-'));
  const key = path.join(dir, 'id_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  await fs.chmod(key, 0o644); // as a checkout would leave it: we load it all the same, as BuildKit does
  const sock = path.join(dir, 'agent.sock');
  const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
  try {
    for (let i = 0; i < 100; i++) if (await fs.stat(sock).catch(() => undefined)) break; else await new Promise((r) => setTimeout(r, 20));
    const copy = path.join(dir, 'k');
    await fs.copyFile(key, copy);
    await fs.chmod(copy, 0o600);
    execFileSync('ssh-add', ['-q', copy], { env: { SSH_AUTH_SOCK: sock }, stdio: 'ignore' });
    const df = [
      'FROM busybox', 'COPY agentprobe /agentprobe',
      'RUN --mount=type=ssh sh -c "ls -l \\$SSH_AUTH_SOCK; /agentprobe"',
      'RUN --mount=type=ssh,id=other,target=/tmp/agent.sock,uid=1000,mode=0600 sh -c "stat -c %u /tmp/agent.sock; /agentprobe /tmp/agent.sock"',
      'RUN /agentprobe /run/buildkit/ssh_agent.0 || echo no-agent-here',
    ].join('\n') + '\n';
    const r = await build(root, ctx, df, ['--no-cache', '--ssh', `default=${sock}`, '--ssh', `other=${key}`]);
    assert.equal(r.code, 0, r.out + r.err);
    assert.match(r.out, /^srw------- .* \/run\/buildkit\/ssh_agent\.0$/m);
    assert.equal((r.out.match(/^agent keys 1$/gm) ?? []).length, 2, 'both agents answer with the one key');
    assert.match(r.out, /^1000$/m);
    assert.match(r.out, /^no-agent-here$/m, 'a step without the mount cannot reach the agent');
    const missing = await build(root, ctx, 'FROM busybox\nRUN --mount=type=ssh,required=true true\n');
    assert.equal(missing.err.trim(), 'Error: Dockerfile:2: RUN --mount=type=ssh: no SSH agent "default" was given (--ssh default=SOCKET)');
    const optional = await build(root, ctx, 'FROM busybox\nRUN --mount=type=ssh sh -c "echo sock=\\$SSH_AUTH_SOCK"\n');
    assert.match(optional.out, /^sock=$/m, 'an optional agent that was not given is left out');
  } finally {
    agent.kill();
  }
});

test('RUN --security=insecure is refused without the entitlement, and runs with every capability and no seccomp with it', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({});
  const df = 'FROM busybox\nRUN --security=insecure grep -E "^(CapEff|Seccomp):" /proc/self/status\n';
  const refused = await build(root, ctx, df);
  assert.notEqual(refused.code, 0);
  assert.equal(refused.err.trim(), 'Error: Dockerfile:2: RUN --security=insecure is not allowed: it needs the security.insecure entitlement (--allow security.insecure)');
  const ok = await build(root, ctx, df, ['--allow', 'security.insecure']);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /^CapEff:\s+000001ffffffffff$/m);
  assert.match(ok.out, /^Seccomp:\s+0$/m);
  const plain = await build(root, ctx, 'FROM busybox\nRUN grep -E "^(CapEff|Seccomp):" /proc/self/status\n');
  assert.match(plain.out, /^CapEff:\s+00000000a80425fb$/m);
  assert.match(plain.out, /^Seccomp:\s+2$/m);
  const unknown = await slipway(root, ['build', '--allow', 'everything', ctx]);
  assert.match(unknown.stderr, /unknown entitlement "everything" for --allow: network.host, security.insecure/);
});
