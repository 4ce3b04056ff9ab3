/**
 * `docker run` and friends through `slipway serve` with the real docker CLI: create, hijacked
 * attach (framed without a tty, raw with one), start, wait, resize, kill, remove, logs, and
 * `docker system df` / `docker image prune`. The interactive case runs in tmux. Containers run
 * under the sandbox of `slipway run` (user namespace, its own network), which is checked too.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { spawnSync, execFileSync } from 'node:child_process';
import {
  DOCKER, cleanup, docker, dockerEnv, dockerMissing, makeContext, rawHttp, request, startServer, storeWithBusybox, tempDir, waitFor, type Server,
} from '../support/engine-api.js';
import { runProcess } from '../support/cli.js';

const skip = dockerMissing();
const hasTmux = spawnSync('tmux', ['-V']).status === 0;
let root = '';
let server: Server | undefined;
let env: NodeJS.ProcessEnv = {};
let socket = '';

before(async () => {
  if (skip) return;
  root = await storeWithBusybox();
  socket = path.join(await tempDir('sw-sock-'), 'd.sock');
  server = await startServer(root, ['-H', `unix://${socket}`]);
  env = await dockerEnv(server.host);
});

after(async () => {
  await server?.stop();
  await cleanup();
});

/** The docker CLI with `input` on its stdin. */
function dockerWithInput(args: string[], input: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return runProcess(DOCKER, args, { env, input });
}

test('docker run --rm IMAGE echo hi: output, exit status, and the container is gone', { skip }, async () => {
  const r = await docker(env, ['run', '--rm', 'busybox', 'echo', 'hi']);
  assert.deepEqual({ code: r.code, stdout: r.stdout, stderr: r.stderr }, { code: 0, stdout: 'hi\n', stderr: '' });
  const split = await docker(env, ['run', '--rm', 'busybox', 'sh', '-c', 'echo out; echo err >&2; exit 3']);
  assert.equal(split.code, 3);
  assert.equal(split.stdout, 'out\n', 'stdout and stderr arrive framed apart');
  assert.equal(split.stderr, 'err\n');
  const ps = await docker(env, ['ps', '-a', '--format', '{{.ID}}']);
  assert.equal(ps.stdout, '', 'auto-removed');
});

test('the container is sandboxed: user namespace, own network, no host files', { skip }, async () => {
  const r = await docker(env, ['run', '--rm', 'busybox', 'sh', '-c', 'cat /proc/self/uid_map; ls /sys/class/net; id -u']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^\s+0\s+1000000000\s+\d+$/m, 'root is an unprivileged host uid');
  assert.doesNotMatch(r.stdout, /eth0|ens|enp/, 'no host interfaces');
});

test('docker run -i: piped stdin reaches the container and its end ends stdin', { skip }, async () => {
  const r = await dockerWithInput(['run', '-i', '--rm', 'busybox', 'sh', '-c', 'cat; echo done'], 'piped line\n');
  assert.deepEqual({ code: r.code, stdout: r.stdout }, { code: 0, stdout: 'piped line\ndone\n' });
});

test('docker run -i -t IMAGE sh in tmux: a real pty, typed commands, resize, exit status', { skip: skip || (!hasTmux && 'needs tmux') }, async () => {
  const session = `slipway-drun-${process.pid}`;
  const tmux = (...a: string[]) => execFileSync('tmux', a, { encoding: 'utf8' });
  tmux('new-session', '-d', '-s', session, '-x', '100', '-y', '30',
    `DOCKER_HOST="${env['DOCKER_HOST']}" DOCKER_CONFIG="${env['DOCKER_CONFIG']}" "${DOCKER}" run -i -t --rm busybox sh; echo "EXIT=$?"; sleep 60`);
  const screen = () => tmux('capture-pane', '-t', session, '-p');
  try {
    assert.ok(await waitFor(() => screen().includes('/ #'), 20_000), screen());
    tmux('send-keys', '-t', session, 'tty; stty size; echo "hello-$((6*7))"', 'Enter');
    assert.ok(await waitFor(() => /hello-42/.test(screen()), 10_000), screen());
    assert.match(screen(), /^\/dev\/pts\/0$/m);
    assert.match(screen(), /^30 100$/m, 'the pty has the terminal\'s size');
    tmux('resize-window', '-t', session, '-x', '90', '-y', '20');
    await new Promise((r) => setTimeout(r, 500));
    tmux('send-keys', '-t', session, 'echo "size=$(stty size)"', 'Enter');
    assert.ok(await waitFor(() => /^size=20 90$/m.test(screen()), 10_000), `a resize reaches the container:\n${screen()}`);
    tmux('send-keys', '-t', session, 'exit 5', 'Enter');
    assert.ok(await waitFor(() => screen().includes('EXIT=5'), 10_000), screen());
  } finally {
    spawnSync('tmux', ['kill-session', '-t', session]);
  }
});

test('logs of a finished container, ps -a, kill, wait and rm', { skip }, async () => {
  const r = await docker(env, ['run', '--name', 'logged-one', 'busybox', 'sh', '-c', 'echo line1; echo line2; echo oops >&2; exit 2']);
  assert.equal(r.code, 2);
  const logs = await docker(env, ['logs', 'logged-one']);
  assert.equal(logs.stdout, 'line1\nline2\n');
  assert.equal(logs.stderr, 'oops\n');
  assert.equal((await docker(env, ['logs', '--tail', '1', 'logged-one'])).stderr, 'oops\n');
  const ps = await docker(env, ['ps', '-a', '--format', '{{.Names}} {{.Status}}']);
  assert.match(ps.stdout, /^logged-one Exited \(2\)$/m);
  const clash = await docker(env, ['run', '--name', 'logged-one', 'busybox', 'true']);
  assert.notEqual(clash.code, 0);
  assert.match(clash.stderr, /The container name "\/logged-one" is already in use/);
  assert.equal((await docker(env, ['rm', 'logged-one'])).code, 0);
  assert.match((await docker(env, ['logs', 'logged-one'])).stderr, /No such container: logged-one/);

  const id = (await docker(env, ['run', '-d', 'busybox', 'sleep', '300'])).stdout.trim();
  assert.match(id, /^[0-9a-f]{64}$/);
  assert.match((await docker(env, ['ps', '--format', '{{.ID}} {{.Status}}'])).stdout, new RegExp(`^${id.slice(0, 12)} Up`, 'm'));
  const running = await docker(env, ['rm', id]);
  assert.match(running.stderr, /container is running/);
  assert.equal((await docker(env, ['kill', id])).code, 0);
  assert.equal((await docker(env, ['wait', id])).stdout, '137\n');
  assert.equal((await docker(env, ['rm', id])).code, 0);
});

test('docker system df and docker image prune', { skip }, async () => {
  const df = await docker(env, ['system', 'df']);
  assert.equal(df.code, 0, df.stderr);
  assert.match(df.stdout, /^Images\s+\d+\s+\d+\s+\S+/m);
  assert.match(df.stdout, /^Containers\s+\d+/m);
  // An untagged build result is a dangling image; the tagged base is not.
  const ctx = await makeContext({ Dockerfile: `FROM busybox\nRUN echo ${Date.now()} > /stamp\n` });
  const built = await docker({ ...env, DOCKER_BUILDKIT: '0' }, ['build', '-q', ctx]);
  assert.equal(built.code, 0, built.stderr);
  const id = built.stdout.trim().replace(/^sha256:/, '');
  const prune = await docker(env, ['image', 'prune', '-f']);
  assert.equal(prune.code, 0, prune.stderr);
  assert.match(prune.stdout, new RegExp(`deleted: sha256:${id}`));
  assert.match(prune.stdout, /Total reclaimed space: /);
  await assert.rejects(fs.stat(path.join(root, 'graph', id)));
  assert.equal((await docker(env, ['image', 'inspect', 'busybox'])).code, 0, 'tagged images stay');
});

/** One request to the server; its status and Docker's error message. */
async function api(method: string, p: string, body?: unknown): Promise<{ status: number; message: string; body: string }> {
  const r = await request(socket, { method, path: p, headers: { 'Content-Type': 'application/json' } }, body === undefined ? undefined : JSON.stringify(body));
  let message = '';
  try {
    message = (JSON.parse(r.body) as { message?: string }).message ?? '';
  } catch {
    message = '';
  }
  return { status: r.status, message, body: r.body };
}

test('hostile container requests are refused with Docker-shaped errors and change nothing', { skip }, async () => {
  const base = { Image: 'busybox', Cmd: ['true'] };
  const cases: Array<[unknown, number, RegExp]> = [
    [{ ...base, HostConfig: { Binds: ['/etc:/host-etc'] } }, 400, /HostConfig\.Binds/],
    [{ ...base, HostConfig: { Privileged: true } }, 400, /HostConfig\.Privileged/],
    [{ ...base, HostConfig: { CapAdd: ['SYS_ADMIN'] } }, 400, /HostConfig\.CapAdd/],
    [{ ...base, HostConfig: { NetworkMode: 'host' } }, 403, /network\.host entitlement/],
    [{ ...base, HostConfig: { NetworkMode: 'container:x' } }, 400, /network mode/],
    [{ ...base, HostConfig: { PidsLimit: 1_000_000 } }, 400, /above this server's limit/],
    [{ ...base, WorkingDir: 'rel' }, 400, /absolute path/],
    [{ ...base, Cmd: ['a\0b'] }, 400, /invalid Cmd/],
    [{ ...base, Hostname: '../x' }, 400, /invalid hostname/],
    [{ Image: '' }, 400, /invalid Image/],
    [{ Image: 'no-such-image-here' }, 404, /No such image: no-such-image-here/],
    [[1, 2], 400, /a JSON object/],
  ];
  for (const [body, status, msg] of cases) {
    const r = await api('POST', '/v1.50/containers/create', body);
    assert.equal(r.status, status, `${JSON.stringify(body)}: ${r.body}`);
    assert.match(r.message, msg);
  }
  assert.match((await api('POST', '/v1.50/containers/create?name=..%2Fetc', base)).message, /Invalid container name/);
  assert.match((await api('POST', '/v1.50/containers/create?name=a', base)).message, /Invalid container name/);
  const made = await api('POST', '/v1.50/containers/create?name=victim', { ...base, Tty: true });
  assert.equal(made.status, 201, made.body);
  for (const [p, status, msg] of [
    ['/v1.50/containers/victim/resize?h=0&w=10', 400, /invalid h/],
    ['/v1.50/containers/victim/resize?h=10&w=abc', 400, /invalid w/],
    ['/v1.50/containers/victim/wait?condition=whenever', 400, /invalid condition/],
    ['/v1.50/containers/victim/kill?signal=NOPE', 400, /invalid signal/],
    ['/v1.50/containers/..%2F..%2Fetc/start', 404, /No such container/],
    ['/v1.50/containers/victim/attach?stream=1', 400, /hijacked connection/],
  ] as const) {
    const r = await api('POST', p);
    assert.equal(r.status, status, `${p}: ${r.body}`);
    assert.match(r.message, msg);
  }
  assert.equal((await api('GET', '/v1.50/containers/victim/logs')).status, 400, 'no stream chosen');
  const upgrade = (p: string) => rawHttp({ socket }, `POST ${p} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n`);
  assert.equal((await upgrade('/v1.50/containers/nope/attach?stream=1&stdout=1')).status, 404);
  assert.equal((await upgrade('/v1.50/images/busybox/json')).status, 400);
  assert.equal((await upgrade('/v1.50/containers/victim/attach?stream=1&detachKeys=ctrl-x')).status, 400);
  assert.equal((await api('DELETE', '/v1.50/containers/victim')).status, 204);
  assert.equal((await api('GET', '/v1.50/containers/json?all=1')).body, '[]\n');
  assert.equal((await api('POST', '/v1.50/images/prune?filters=%7B%22until%22%3A%5B%2210m%22%5D%7D')).status, 400);
});
