/**
 * The farm through `slipway serve`: `POST /slipway/v1/builds` with a context tar, status and
 * log from `GET /slipway/v1/builds/{id}`, streamed progress from `.../events`, and `GET /metrics`.
 * A private redis-server and docker-registry on free loopback ports, one `slipway worker` child
 * process; every process is killed in `after`, whatever happened.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  CLI, cleanup, makeContext, rawHttp, request, serveFails, startServer, storeWithBusybox, tempDir, waitFor, type Server,
} from '../support/engine-api.js';
import { missingTools, startRegistry, type TestRegistry } from '../support/registry.js';
import { startRedis, type TestRedis } from '../support/redis.js';

// startRegistry needs every tool missingTools() names; the farm needs redis-server too.
const absent = [...missingTools(), ...(() => {
  try {
    execFileSync('sh', ['-c', 'command -v redis-server'], { stdio: 'ignore' });
    return [];
  } catch {
    return ['redis-server'];
  }
})()];
const skip = absent.length > 0 ? `missing ${absent.join(', ')} (scripts/install-deps.sh)` : undefined;
if (skip) console.log(`# skipping farm API tests: ${skip}`);

let redis: TestRedis | undefined;
let reg: TestRegistry | undefined;
let server: Server | undefined;
let worker: { child: ChildProcess; exited: Promise<void> } | undefined;
/** The server's environment without a farm (the machine's own REDIS_URL must not leak in). */
const NO_FARM = { REDIS_URL: '', SLIPWAY_REGISTRY: '' };

before(async () => {
  if (skip) return;
  [redis, reg] = await Promise.all([startRedis(), startRegistry()]);
  const root = await storeWithBusybox();
  server = await startServer(root, ['-H', `unix://${path.join(await tempDir('sw-sock-'), 'd.sock')}`, '--redis', redis.url, '--registry', reg.host], NO_FARM);
});

after(async () => {
  if (worker) {
    const w = worker;
    if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGTERM');
    const t = setTimeout(() => w.child.kill('SIGKILL'), 10_000);
    await w.exited;
    clearTimeout(t);
  }
  await server?.stop();
  await redis?.stop();
  await reg?.stop();
  await cleanup();
});

/** Starts one `slipway worker` (its own store, with busybox) and resolves once it waits for builds. */
async function startWorker(): Promise<void> {
  const root = await storeWithBusybox();
  const child = spawn(process.execPath, [CLI, '--root', root, 'worker', '--redis', redis!.url, '--registry', reg!.host, '--name', 'api-w1'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  worker = { child, exited };
  let err = '';
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      if (err.includes('waiting for builds')) resolve();
    });
    void exited.then(() => reject(new Error(`worker exited before it was ready:\n${err}`)));
  });
}

/** A context folder packed as the docker CLI would send it. */
async function contextTar(files: Record<string, string>): Promise<Buffer> {
  return execFileSync('tar', ['-C', await makeContext(files), '-cf', '-', '.']);
}

async function call(method: string, target: string, body?: Buffer): Promise<{ status: number; json: any; text: string }> {
  const r = await request(server!.socket!, { method, path: target, headers: body ? { 'Content-Type': 'application/x-tar', 'Content-Length': body.length } : {} }, body);
  let json: unknown;
  try {
    json = JSON.parse(r.body);
  } catch {
    json = undefined;
  }
  return { status: r.status, json, text: r.body };
}

async function submit(query: string, files: Record<string, string> | Buffer): Promise<{ status: number; json: any }> {
  return call('POST', `/slipway/v1/builds?${query}`, Buffer.isBuffer(files) ? files : await contextTar(files));
}

/** Polls the build's status until it is finished. */
async function finished(id: string): Promise<any> {
  let last: any;
  const ok = await waitFor(async () => {
    last = (await call('GET', `/slipway/v1/builds/${id}`)).json;
    return last?.status === 'succeeded' || last?.status === 'failed';
  }, 60_000);
  assert.ok(ok, JSON.stringify(last));
  return last;
}

/** Reads the events stream to its end, noting when each JSON line arrived. */
function readEvents(id: string): Promise<Array<{ at: number; msg: any }>> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath: server!.socket!, path: `/slipway/v1/builds/${id}/events` }, (res) => {
      assert.equal(res.statusCode, 200);
      const out: Array<{ at: number; msg: any }> = [];
      let buf = '';
      res.on('data', (d: Buffer) => {
        buf += d.toString();
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.trim()) out.push({ at: Date.now(), msg: JSON.parse(line) });
        }
      });
      res.on('end', () => resolve(out));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

test('without --redis and --registry the farm endpoints answer 503; one without the other is a usage error', { skip }, async () => {
  const plain = await startServer(await tempDir('sw-root-'), ['-H', `unix://${path.join(await tempDir('sw-sock-'), 'd.sock')}`], NO_FARM);
  try {
    for (const [method, p] of [['POST', '/slipway/v1/builds'], ['GET', '/slipway/v1/builds/b-1'], ['GET', '/slipway/v1/builds/b-1/events']] as const) {
      const r = await request(plain.socket!, { method, path: p, headers: { 'Content-Length': 0 } }, '');
      assert.equal(r.status, 503, `${method} ${p}`);
      assert.match(JSON.parse(r.body).message, /the build farm is not configured: start "slipway serve" with --redis URL --registry HOST/);
    }
    const metrics = await request(plain.socket!, { method: 'GET', path: '/metrics' });
    assert.equal(metrics.status, 200);
    assert.match(metrics.body, /^# TYPE slipway_builds_total counter$/m);
  } finally {
    await plain.stop();
  }
  const half = await serveFails(await tempDir('sw-root-'), ['-H', 'unix:///tmp/never.sock', '--redis', 'redis://127.0.0.1:1'], NO_FARM);
  assert.notEqual(half.code, 0);
  assert.match(half.stderr, /--redis needs a registry for the farm/);
});

test('submit, deduplicate, follow the events stream to the result, read status and log; the image is pushed', { skip }, async () => {
  // One tar for both submits: its bytes (mtimes included) are part of the job's identity.
  const files = await contextTar({ Dockerfile: 'FROM busybox\nARG WHO\nRUN echo "start $WHO" && sleep 1.5 && echo end\n' });
  const query = `t=farmapi/seed&push=1&buildargs=${encodeURIComponent(JSON.stringify({ WHO: 'scooby' }))}`;
  // No worker yet: the job waits, and the same inputs again attach to it.
  const first = await submit(query, files);
  assert.equal(first.status, 201, JSON.stringify(first.json));
  assert.match(first.json.id, /^b-[0-9a-f]{32}$/);
  assert.equal(first.json.deduplicated, false);
  const second = await submit(query, files);
  assert.deepEqual([second.status, second.json], [200, { id: first.json.id, deduplicated: true }]);
  const queued = await call('GET', `/slipway/v1/builds/${first.json.id}`);
  assert.equal(queued.status, 200);
  assert.equal(queued.json.status, 'queued');
  assert.deepEqual(queued.json.tags, ['farmapi/seed']);
  assert.match((await call('GET', '/metrics')).text, /^slipway_queue_depth 1$/m);

  await startWorker();
  const events = await readEvents(first.json.id);
  const last = events[events.length - 1]!.msg;
  assert.equal(last.result?.ok, true, JSON.stringify(events.map((e) => e.msg)));
  const text = events.filter((e) => 'stream' in e.msg).map((e) => e.msg.stream).join('');
  assert.match(text, /^Step 1\/3 : FROM busybox\n/);
  assert.match(text, /\nstart scooby\nend\n/);
  assert.match(text, new RegExp(`Successfully built ${last.result.imageId.slice(0, 12)}\n`));
  // Streamed as it ran: the RUN's first line came well before the result.
  const startAt = events.find((e) => typeof e.msg.stream === 'string' && e.msg.stream.includes('start scooby'))!.at;
  assert.ok(events[events.length - 1]!.at - startAt >= 1000, `start at ${startAt}, result at ${events[events.length - 1]!.at}`);

  const done = await call('GET', `/slipway/v1/builds/${first.json.id}`);
  assert.equal(done.json.status, 'succeeded');
  assert.equal(done.json.result.imageId, last.result.imageId);
  assert.equal(done.json.worker, 'api-w1');
  assert.ok(done.json.logs.some((l: string) => l.includes('Successfully built')), JSON.stringify(done.json.logs));
  assert.deepEqual(done.json.result.pushed.map((p: { tag: string }) => p.tag), [`${reg!.host}/farmapi/seed`]);
  const tags = await (await fetch(`http://${reg!.host}/v2/farmapi/seed/tags/list`)).json() as { tags: string[] };
  assert.deepEqual(tags.tags, ['latest']);

  // A finished build's events are its log replayed, then the result, at once.
  const replay = await readEvents(first.json.id);
  assert.equal(replay.filter((e) => 'stream' in e.msg).map((e) => e.msg.stream).join(''), text);
  assert.deepEqual(replay[replay.length - 1]!.msg, last);
});

test('a failing RUN is a failed build with Docker\'s message', { skip }, async () => {
  assert.ok(worker, 'the previous test started the worker');
  const r = await submit('t=farmapi/fails', { Dockerfile: 'FROM busybox\nRUN echo about to fail && exit 3\n' });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  const st = await finished(r.json.id);
  assert.equal(st.status, 'failed');
  assert.equal(st.result.ok, false);
  assert.match(st.result.error.message, /The command '\/bin\/sh -c echo about to fail && exit 3' returned a non-zero code: 3/);
  assert.ok(st.logs.join('').includes('about to fail\n'));
});

test('bad requests: not a tar, too large, bad parameters, unknown builds', { skip }, async () => {
  const junk = await call('POST', '/slipway/v1/builds?t=x', Buffer.from('this is not a tar archive'));
  assert.deepEqual([junk.status, junk.json.message], [400, 'invalid tar archive: the build context must be a tar (plain, gzip, bzip2 or xz)']);
  const empty = await call('POST', '/slipway/v1/builds?t=x', Buffer.alloc(0));
  assert.deepEqual([empty.status, empty.json.message], [400, 'the build context is empty: send a tar']);
  const big = await rawHttp({ socket: server!.socket! }, 'POST /slipway/v1/builds HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000000\r\nConnection: close\r\n\r\n');
  assert.equal(big.status, 413);
  assert.match(JSON.parse(big.body).message, /build context exceeds the server's limit of \d+ bytes/);
  const tenant = await submit('tenant=../etc', { Dockerfile: 'FROM busybox\n' });
  assert.equal(tenant.status, 400);
  const args = await submit('buildargs=%7Bnope', { Dockerfile: 'FROM busybox\n' });
  assert.deepEqual([args.status, args.json.message], [400, 'invalid JSON in parameter buildargs']);
  for (const p of ['/slipway/v1/builds/b-nope', '/slipway/v1/builds/b-nope/events']) {
    const r = await call('GET', p);
    assert.deepEqual([r.status, r.json.message], [404, 'no such build: b-nope']);
  }
});

test('GET /metrics counts the server\'s own builds and steps and reads the farm\'s queue', { skip }, async () => {
  const tar = await contextTar({ Dockerfile: 'FROM busybox\nRUN echo metrics > /m\n' });
  for (let i = 0; i < 2; i++) {
    const b = await call('POST', '/build?t=metrics-test', tar);
    assert.equal(b.status, 200, b.text);
    assert.match(b.text, /Successfully tagged metrics-test:latest/);
  }
  const m = await call('GET', '/metrics');
  assert.equal(m.status, 200);
  assert.match(m.text, /^slipway_builds_total\{result="success"\} 2$/m);
  assert.match(m.text, /^slipway_steps_total\{outcome="miss",source="local"\} 1$/m);
  assert.match(m.text, /^slipway_steps_total\{outcome="hit",source="local"\} 1$/m);
  assert.match(m.text, /^slipway_step_duration_seconds_count 1$/m);
  assert.match(m.text, /^slipway_queue_depth 0$/m);
  assert.match(m.text, /^slipway_active_workers 1$/m);
  assert.match(m.text, /^slipway_running_builds 0$/m);
});
