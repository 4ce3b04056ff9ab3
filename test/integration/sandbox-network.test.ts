/**
 * The default network reaches other hosts (a test host in its own network namespace, joined to
 * this one by a veth pair, stands in for the internet); `--network none` and `RUN --network=none`
 * reach nothing. Requests are counted by the test host's server, not by the step.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { makeContext, storeWithBusybox } from '../support/cli.js';
import { buildIn } from '../support/probe.js';

const hasIp = (() => {
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const skip = process.getuid?.() !== 0 ? 'needs root' : !hasIp ? 'needs ip (iproute2)' : false;

const n = process.pid % 250;
const NS = `slwtest${process.pid}`;
const HOST_IF = `slwh${process.pid % 100000}`;
const PEER_IF = `slwp${process.pid % 100000}`;
const HOST_ADDR = `10.201.${n}.1`;
const TEST_HOST = `10.201.${n}.2`;

let root = '';
let ctx = '';
let server: ChildProcess | undefined;
let served = 0;

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

before(async () => {
  if (skip) return;
  root = await storeWithBusybox();
  ctx = await makeContext({});
  ip('netns', 'add', NS);
  ip('link', 'add', HOST_IF, 'type', 'veth', 'peer', 'name', PEER_IF);
  ip('link', 'set', PEER_IF, 'netns', NS);
  ip('addr', 'add', `${HOST_ADDR}/30`, 'dev', HOST_IF);
  ip('link', 'set', HOST_IF, 'up');
  ip('-n', NS, 'addr', 'add', `${TEST_HOST}/30`, 'dev', PEER_IF);
  ip('-n', NS, 'link', 'set', PEER_IF, 'up');
  ip('-n', NS, 'link', 'set', 'lo', 'up');
  const script = `require('http').createServer((q, s) => { console.log('request'); s.end('hello-from-test-host\\n'); }).listen(8080, '${TEST_HOST}', () => console.log('listening'));`;
  server = spawn('ip', ['netns', 'exec', NS, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => {
    server!.stdout!.on('data', (b: Buffer) => {
      const text = b.toString();
      served += text.split('\n').filter((l) => l === 'request').length;
      if (text.includes('listening')) resolve();
    });
  });
});

after(async () => {
  server?.kill('SIGKILL');
  if (!skip) {
    try { ip('netns', 'del', NS); } catch { /* already gone */ }
    try { ip('link', 'del', HOST_IF); } catch { /* went with the namespace */ }
  }
  for (const d of [root, ctx]) if (d) await fs.rm(d, { recursive: true, force: true });
});

test('the default network reaches a host on another network', { skip }, async () => {
  const before = served;
  const r = await buildIn(root, ctx, `FROM busybox\nRUN wget -q -O- http://${TEST_HOST}:8080/\n`);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^hello-from-test-host$/m);
  assert.equal(served - before, 1, 'the test host served exactly one request');
});

test('--network none and RUN --network=none reach nothing', { skip }, async () => {
  const before = served;
  const none = await buildIn(root, ctx, `FROM busybox\nRUN wget -q -T 3 -O- http://${TEST_HOST}:8080/ || echo no-""network\n`, ['--network', 'none']);
  assert.equal(none.code, 0, none.out);
  assert.match(none.out, /^no-network$/m);
  const perStep = await buildIn(root, ctx, `FROM busybox\nRUN --network=none wget -q -T 3 -O- http://${TEST_HOST}:8080/ || echo no-""network\n`);
  assert.equal(perStep.code, 0, perStep.out);
  assert.match(perStep.out, /^no-network$/m);
  assert.equal(served, before, 'no request reached the test host');
});

test('--network host is the host network, and an unknown mode is refused', { skip }, async () => {
  const host = await buildIn(root, ctx, `FROM busybox\nRUN ip addr | grep -c ${HOST_ADDR}\n`, ['--network', 'host']);
  assert.equal(host.code, 0, host.out);
  const bad = await buildIn(root, ctx, 'FROM busybox\nRUN --network=bridge2 true\n');
  assert.notEqual(bad.code, 0);
  assert.match(bad.out, /Dockerfile:2: unsupported network mode: bridge2/);
});

const hasIptables = (() => {
  try {
    execFileSync('iptables', ['-S', 'OUTPUT'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

test("a step reaches the host's own non-loopback address, and an owner rule on uid 65534 (the network daemon) fences it off", { skip: skip || (!hasIptables && 'needs iptables') }, async () => {
  const net = await import('node:net');
  let connections = 0;
  // Every connection is destroyed at the end: one whose peer went with the test's veth would
  // otherwise sit in FIN-WAIT and keep this process alive.
  const sockets = new Set<import('node:net').Socket>();
  const server = net.createServer((s) => { connections++; sockets.add(s); s.end('from-the-host\n'); });
  await new Promise<void>((r) => server.listen(0, HOST_ADDR, () => r()));
  const port = (server.address() as import('node:net').AddressInfo).port;
  const rule = ['OUTPUT', '-m', 'owner', '--uid-owner', '65534', '-d', HOST_ADDR, '-p', 'tcp', '--dport', String(port), '-j', 'REJECT'];
  const probe = `FROM busybox\nRUN (nc -w 3 ${HOST_ADDR} ${port} </dev/null || true) | grep -q from-the-host && echo RE""ACHED || echo NOT-""REACHED\n`;
  try {
    const open = await buildIn(root, ctx, probe);
    assert.equal(open.code, 0, open.out);
    assert.match(open.out, /^REACHED$/m);
    assert.equal(connections, 1);
    execFileSync('iptables', ['-A', ...rule]);
    try {
      const fenced = await buildIn(root, ctx, probe);
      assert.equal(fenced.code, 0, fenced.out);
      assert.match(fenced.out, /^NOT-REACHED$/m);
      assert.equal(connections, 1, 'the server saw no second connection');
      // The worker itself (root) is not fenced off.
      const mine = await new Promise<string>((resolve, reject) => {
        const c = net.connect(port, HOST_ADDR);
        let got = '';
        c.on('data', (b) => { got += b.toString(); });
        c.on('end', () => { c.destroy(); resolve(got); });
        c.on('error', reject);
      });
      assert.equal(mine, 'from-the-host\n');
    } finally {
      execFileSync('iptables', ['-D', ...rule]);
    }
  } finally {
    for (const c of sockets) c.destroy();
    server.close();
  }
});
