/**
 * RUN --mount=type=cache through the CLI: the folder persists on the store between builds (each
 * build is a new process: a restart), never enters a layer (only its mount point does, as in
 * BuildKit), starts empty with --no-cache, honours uid/gid/mode/from/readonly, serializes
 * `locked` users across processes, gives `private` users their own copies, and is cleared by
 * `prune` (counted against --keep-storage).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { slipway, storeWithBusybox, makeContext } from '../support/cli.js';

/** Builds a Dockerfile (in a new context) and returns the output and the id of the image. */
async function build(root: string, dockerfile: string, flags: string[] = []): Promise<{ code: number; out: string; id: string }> {
  const ctx = await makeContext({ Dockerfile: dockerfile });
  const r = await slipway(root, ['build', ...flags, ctx]);
  const id = /Successfully built ([0-9a-f]{12})/.exec(r.stdout)?.[1] ?? '';
  return { code: r.code, out: r.stdout + r.stderr, id };
}

/** Every path of an image's own layer folder. */
async function layerPaths(root: string, short: string): Promise<string[]> {
  const id = (await fs.readdir(path.join(root, 'graph'))).find((n) => n.startsWith(short))!;
  const out: string[] = [];
  const walk = async (dir: string, rel: string) => {
    for (const n of (await fs.readdir(dir)).sort()) {
      out.push(`${rel}${n}`);
      if ((await fs.lstat(path.join(dir, n))).isDirectory()) await walk(path.join(dir, n), `${rel}${n}/`);
    }
  };
  await walk(path.join(root, 'graph', id, 'layer'), '');
  return out;
}

test('a cache mount persists between builds, never enters a layer, and --no-cache starts it empty', async () => {
  const root = await storeWithBusybox();
  const first = await build(root, 'FROM busybox\nRUN --mount=type=cache,target=/var/cache/app sh -c "ls /var/cache/app | wc -l; echo data > /var/cache/app/kept; echo 1 >> /var/cache/app/count"\n');
  assert.equal(first.code, 0, first.out);
  assert.match(first.out, /^0$/m, 'empty at first');
  assert.deepEqual(await layerPaths(root, first.id), ['var', 'var/cache', 'var/cache/app'], 'only the mount point is in the layer');
  const second = await build(root, 'FROM busybox\nRUN --mount=type=cache,target=/var/cache/app sh -c "cat /var/cache/app/kept; wc -l < /var/cache/app/count; echo 1 >> /var/cache/app/count"\n');
  assert.equal(second.code, 0, second.out);
  assert.match(second.out, /^data$/m, 'what the first build left is there (a new process: the mount survived the restart)');
  assert.match(second.out, /^1$/m);
  const fresh = await build(root, 'FROM busybox\nRUN --mount=type=cache,target=/var/cache/app sh -c "ls /var/cache/app | wc -l"\n', ['--no-cache']);
  assert.equal(fresh.code, 0, fresh.out);
  assert.match(fresh.out, /^0$/m, '--no-cache: empty');
  const after = await build(root, 'FROM busybox\nRUN --mount=type=cache,target=/var/cache/app wc -l /var/cache/app/count\n');
  assert.match(after.out, /^2 \/var\/cache\/app\/count$/m, '--no-cache left the kept mount as it was');
  // The id names the cache, not the target; the content is never in the key: an unchanged step is a hit.
  const byId = await build(root, 'FROM busybox\nRUN --mount=type=cache,id=/var/cache/app,target=/elsewhere cat /elsewhere/kept\n');
  assert.match(byId.out, /^data$/m);
  const again = await build(root, 'FROM busybox\nRUN --mount=type=cache,id=/var/cache/app,target=/elsewhere cat /elsewhere/kept\n');
  assert.match(again.out, /Using cache/);
});

test('uid, gid, mode, readonly and from/source of a cache mount', async () => {
  const root = await storeWithBusybox();
  const owner = await build(root, 'FROM busybox\nRUN --mount=type=cache,target=/c,id=own,uid=1000,gid=1001,mode=0750 stat -c "%u %g %a" /c\n');
  assert.match(owner.out, /^1000 1001 750$/m, owner.out);
  const user = await build(root, 'FROM busybox\nUSER 1000\nRUN --mount=type=cache,target=/c,id=own,uid=1000 sh -c "echo mine > /c/f && stat -c %u /c/f"\n');
  assert.equal(user.code, 0, user.out);
  assert.match(user.out, /^1000$/m, 'a non-root user writes to a cache it owns');
  const ro = await build(root, 'FROM busybox\nRUN --mount=type=cache,target=/c,id=own,ro sh -c "cat /c/f; touch /c/g || echo refused"\n');
  assert.match(ro.out, /^mine$/m);
  assert.match(ro.out, /^refused$/m);
  const seeded = await build(root, 'FROM busybox AS seed\nRUN mkdir -p /s/sub && echo seeded > /s/sub/f\nFROM busybox\nRUN --mount=type=cache,target=/c,id=seeded,from=seed,source=/s sh -c "cat /c/sub/f; echo more > /c/g"\n');
  assert.equal(seeded.code, 0, seeded.out);
  assert.match(seeded.out, /^seeded$/m);
  const later = await build(root, 'FROM busybox AS seed\nRUN mkdir -p /s/sub && echo seeded > /s/sub/f\nFROM busybox\nRUN --mount=type=cache,target=/c,id=seeded,from=seed,source=/s cat /c/g\n');
  assert.match(later.out, /^more$/m, 'the seed is only the start: the cache keeps what steps added');
});

/** Two builds started at once, each appending its start and end to the shared cache, with a pause between. */
async function concurrent(root: string, sharing: string): Promise<Array<{ code: number; out: string }>> {
  const df = (who: string) => `FROM busybox\nRUN --mount=type=cache,target=/c,id=conc-${sharing},sharing=${sharing} sh -c "ls /c; echo ${who} > /c/${who}; echo ${who}-start >> /c/log; sleep 2; echo ${who}-end >> /c/log; ls /c"\n`;
  return Promise.all(['a', 'b'].map((w) => build(root, df(w))));
}

async function cacheFile(root: string, id: string, instance: number, file: string): Promise<string> {
  for (const key of await fs.readdir(path.join(root, 'cache-mounts'))) {
    const meta = JSON.parse(await fs.readFile(path.join(root, 'cache-mounts', key, 'meta.json'), 'utf8')) as { id: string };
    if (meta.id === id) return fs.readFile(path.join(root, 'cache-mounts', key, String(instance), 'data', file), 'utf8');
  }
  throw new Error(`no cache mount ${id}`);
}

test('sharing=locked serializes two concurrent builds (in two processes)', async () => {
  const root = await storeWithBusybox();
  const rs = await concurrent(root, 'locked');
  for (const r of rs) assert.equal(r.code, 0, r.out);
  assert.ok(rs.some((r) => /waiting for process \d+, which uses it/.test(r.out)), 'one build waited for the other');
  const log = (await cacheFile(root, 'conc-locked', 0, 'log')).trim().split('\n');
  assert.equal(log.length, 4);
  assert.equal(log[0]!.split('-')[0], log[1]!.split('-')[0], `one build's start and end are adjacent: ${log.join(' ')}`);
  assert.deepEqual(log.map((l) => l.split('-')[1]), ['start', 'end', 'start', 'end']);
});

test('sharing=shared lets two builds use the folder at once; private gives each its own copy', async () => {
  const root = await storeWithBusybox();
  const shared = await concurrent(root, 'shared');
  for (const r of shared) assert.equal(r.code, 0, r.out);
  const log = (await cacheFile(root, 'conc-shared', 0, 'log')).trim().split('\n');
  assert.deepEqual(log.map((l) => l.split('-')[1]), ['start', 'start', 'end', 'end'], `the two ran at once: ${log.join(' ')}`);
  const priv = await concurrent(root, 'private');
  for (const r of priv) assert.equal(r.code, 0, r.out);
  const logs = [(await cacheFile(root, 'conc-private', 0, 'log')).trim(), (await cacheFile(root, 'conc-private', 1, 'log')).trim()].sort();
  assert.deepEqual(logs, ['a-start\na-end', 'b-start\nb-end'], 'each build had its own copy');
  // Alone, a private build takes an existing copy again.
  const alone = await build(root, 'FROM busybox\nRUN --mount=type=cache,target=/c,id=conc-private,sharing=private cat /c/log\n');
  assert.match(alone.out, /^[ab]-end$/m);
});

test('prune clears unused cache mounts and counts them against --keep-storage', async () => {
  const root = await storeWithBusybox();
  const big = await build(root, 'FROM busybox\nRUN --mount=type=cache,target=/c,id=big dd if=/dev/zero of=/c/blob bs=1024 count=2048\n');
  assert.equal(big.code, 0, big.out);
  const small = await build(root, 'FROM busybox\nRUN --mount=type=cache,target=/c,id=small sh -c "echo x > /c/x"\n');
  assert.equal(small.code, 0, small.out);
  const roomy = await slipway(root, ['prune', '--keep-storage', '1GB']);
  assert.equal(roomy.code, 0, roomy.stderr);
  assert.doesNotMatch(roomy.stdout, /cache mount/, 'under the cap: nothing to remove');
  assert.equal((await fs.readdir(path.join(root, 'cache-mounts'))).length, 2);
  const dry = await slipway(root, ['prune', '--dry-run']);
  assert.match(dry.stdout, /^Would delete cache mount: default\/big \(2\.1\d* MB\)$/m, dry.stdout);
  assert.equal((await fs.readdir(path.join(root, 'cache-mounts'))).length, 2, 'dry run removes nothing');
  // The busybox base (tagged) stays; the cap leaves room for it and the small cache only.
  const baseDir = path.join(root, 'graph', (await fs.readdir(path.join(root, 'graph'))).find((n) => n.startsWith('7a125d0f3742'))!);
  const base = Number(await fs.readFile(path.join(baseDir, 'layersize'), 'utf8')) + (await fs.stat(path.join(baseDir, 'layer.tar'))).size;
  const capped = await slipway(root, ['prune', '--keep-storage', String(base + 1_000_000)]);
  assert.equal(capped.code, 0, capped.stderr);
  assert.match(capped.stdout, /^Deleted cache mount: default\/big/m, capped.stdout);
  assert.doesNotMatch(capped.stdout, /cache mount: default\/small/);
  const all = await slipway(root, ['prune']);
  assert.match(all.stdout, /^Deleted cache mount: default\/small/m);
  assert.deepEqual(await fs.readdir(path.join(root, 'cache-mounts')), []);
  const empty = await build(root, 'FROM busybox\nRUN --mount=type=cache,target=/c,id=small ls /c\n');
  assert.doesNotMatch(empty.out, /^x$/m, 'a pruned cache mount starts empty');
});
