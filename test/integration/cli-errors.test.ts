/**
 * Everyday mistakes get one clear line (no JavaScript stack trace unless --debug or
 * SLIPWAY_DEBUG=1), a non-zero status, and leave the store as it was.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { CLI, busyboxTar, makeContext, slipway, snapshotTree, storeWithBusybox } from '../support/cli.js';
import { inPrivateMounts, section } from '../support/private-mount.js';

const STACK = /^\s+at |node:internal|Error: Error:|Unhandled 'error' event/m;

/** Exactly one line on stderr, no stack trace, the given status class. */
function oneLine(r: { code: number; stderr: string }, want: string | RegExp, what: string): void {
  assert.notEqual(r.code, 0, `${what}: exit status`);
  assert.doesNotMatch(r.stderr, STACK, what);
  assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, `${what}: one line:\n${r.stderr}`);
  if (typeof want === 'string') assert.equal(r.stderr, `${want}\n`, what);
  else assert.match(r.stderr, want, what);
}

test('a missing input or output file is one line naming it; the store is unchanged', async () => {
  const root = await storeWithBusybox();
  const before = await snapshotTree(root);
  oneLine(await slipway(root, ['load', '-i', '/nonexistent.tar']), 'Error: open /nonexistent.tar: no such file or directory', 'load -i');
  oneLine(await slipway(root, ['import', '/nonexistent.tar', 'foo']), 'Error: open /nonexistent.tar: no such file or directory', 'import');
  oneLine(await slipway(root, ['save', '-o', '/missing-dir/x.tar', 'busybox']), 'Error: failed to save image: invalid output path: directory "/missing-dir" does not exist', 'save -o');
  oneLine(await slipway(root, ['load', '-i', '/tmp']), 'Error: read /tmp: is a directory', 'load -i DIR');
  assert.deepEqual(await snapshotTree(root), before);
});

test('a Dockerfile that makes no image (FROM scratch alone) fails with Docker\'s line and leaves the store unchanged', async () => {
  const root = await storeWithBusybox();
  const before = await snapshotTree(root);
  const r = await slipway(root, ['build', await makeContext({ Dockerfile: 'FROM scratch\n' })]);
  oneLine(r, 'No image was generated. Is your Dockerfile empty?', 'FROM scratch');
  assert.deepEqual((await snapshotTree(root)).filter((l) => !l.startsWith('builds') && !l.startsWith('storage-driver')), before);
});

test('every bad tag gets Docker\'s "invalid reference format" with a reason that fits it', async () => {
  const root = await storeWithBusybox();
  const before = await snapshotTree(root);
  const cases: Array<[string, string]> = [
    ['Bad_Name:1', 'Error: invalid reference format: repository name must be lowercase'],
    ['ok:bad tag', `Error: invalid reference format: "ok:bad tag": a tag is up to 128 letters, digits, '_', '.' or '-', and starts with a letter, digit or '_'`],
    ['ok::x', `Error: invalid reference format: "ok::x": ':' may appear only once, before the tag`],
    ['foo:', `Error: invalid reference format: "foo:": the tag after ':' is empty`],
  ];
  for (const [tag, want] of cases) {
    oneLine(await slipway(root, ['tag', 'busybox', tag]), want, `tag ${tag}`);
    oneLine(await slipway(root, ['build', '-t', tag, await makeContext({ Dockerfile: 'FROM busybox\n' })]), want, `build -t ${tag}`);
  }
  assert.deepEqual(await snapshotTree(root), before);
});

test('a stack trace only with --debug (anywhere on the line) or SLIPWAY_DEBUG=1', async () => {
  const root = await storeWithBusybox();
  const plain = await slipway(root, ['load', '-i', '/nonexistent.tar']);
  assert.doesNotMatch(plain.stderr, STACK);
  for (const args of [['--debug', 'load', '-i', '/nonexistent.tar'], ['load', '--debug', '-i', '/nonexistent.tar'], ['load', '-i', '/nonexistent.tar', '--debug']]) {
    const r = await slipway(root, args);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^Error: open \/nonexistent.tar: no such file or directory\n.*\n\s+at /, args.join(' '));
  }
  const env = await slipway(root, ['load', '-i', '/nonexistent.tar'], { env: { SLIPWAY_DEBUG: '1' } });
  assert.match(env.stderr, /\n\s+at /);
  // After the image, --debug is the container's argument, not ours.
  const run = await slipway(root, ['run', 'busybox', 'echo', '--debug']);
  assert.equal(run.stdout, '--debug\n', run.stderr);
  // Before it, even after a flag that takes a value, it is ours.
  const flagged = await slipway(root, ['run', '-m', '64m', '--debug', 'busybox', 'echo', 'x', '--debug']);
  assert.equal(flagged.stdout, 'x --debug\n', flagged.stderr);
});

test('as a non-root user, images, build and run say that slipway needs root', async (t) => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\n' });
  for (const args of [['images'], ['build', ctx], ['run', 'busybox', 'true'], ['load', '-i', '/nonexistent.tar']]) {
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, CLI, '--root', root, ...args], { encoding: 'utf8' });
    if (r.error) return t.skip(`setpriv: ${r.error.message}`);
    oneLine({ code: r.status ?? 1, stderr: r.stderr }, 'slipway needs root (overlay mounts and namespaces)', args[0]!);
  }
});

test('--root on a read-only filesystem: one line naming the path and the cause', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nLABEL a=b\n' });
  const r = await inPrivateMounts(`
    RO=$(mktemp -d)
    mount --bind "$STORE" "$RO" && mount -o remount,bind,ro "$RO"
    echo BEGIN images; $CLI --root "$RO" images -q 2>&1; echo "status=$?"; echo END images
    echo BEGIN build; $CLI --root "$RO" build -t x "$CTX" 2>&1 >/dev/null; echo "status=$?"; echo END build
    echo BEGIN fresh; $CLI --root "$RO/new" build -t x "$CTX" 2>&1 >/dev/null; echo "status=$?"; echo END fresh
    echo BEGIN tag; $CLI --root "$RO" tag busybox y 2>&1; echo "status=$?"; echo END tag
    echo "RO=$RO"
  `, { STORE: root, CTX: ctx });
  assert.equal(r.code, 0, r.stderr);
  const ro = /RO=(\S+)/.exec(r.stdout)![1]!;
  assert.match(section(r.stdout, 'images'), /^[0-9a-f]{12}\nstatus=0\n$/, 'reading works');
  for (const [name, want] of [['build', `${ro}/graph/_tmp/`], ['fresh', `mkdir ${ro}/new: read-only file system`], ['tag', `${ro}/locks/repositories.lock: read-only file system`]] as const) {
    const out = section(r.stdout, name);
    assert.match(out, /status=1\n$/, name);
    const line = out.replace(/status=1\n$/, '');
    oneLine({ code: 1, stderr: line }, /^Error: \w+ \/\S+: read-only file system\n$/, name);
    assert.ok(line.includes(want), `${name}: ${line}`);
  }
});

test('a full disk: load, import and a LABEL step print one ENOSPC line, add no image and leave nothing in graph/_tmp', async () => {
  const src = await storeWithBusybox();
  const big = await makeContext({ Dockerfile: 'FROM busybox\nRUN dd if=/dev/urandom of=/big bs=1024 count=1500 2>/dev/null\n' });
  assert.equal((await slipway(src, ['build', '-t', 'big', big])).code, 0);
  const archive = path.join(big, 'big.tar');
  assert.equal((await slipway(src, ['save', '-o', archive, 'big'])).code, 0);
  const warm = await makeContext({ Dockerfile: 'FROM busybox\nLABEL warm=1\n' });
  const label = await makeContext({ Dockerfile: 'FROM busybox\nLABEL a=b\n' });
  const r = await inPrivateMounts(`
    D=$(mktemp -d); mount -t tmpfs -o size=9m tmpfs "$D"; S="$D/s"
    $CLI --root "$S" import --change 'CMD ["sh"]' "$BUSYBOX" busybox:latest >/dev/null || exit 3
    $CLI --root "$S" build "$WARM" >/dev/null || exit 4
    snap() { find "$S" -printf '%p %y %m\\n' | sort; find "$S" -type f -print0 | sort -z | xargs -0 sha256sum; }
    dd if=/dev/zero of="$D/filler" bs=64k 2>/dev/null; rm "$D/filler"
    dd if=/dev/zero of="$D/filler" bs=64k count=$(( $(df --output=avail -k "$D" | tail -1) / 64 - 4 )) 2>/dev/null
    before=$(snap)
    echo BEGIN load; $CLI --root "$S" load -i "$ARCHIVE" 2>&1; echo "status=$?"; echo END load
    [ "$before" = "$(snap)" ] && echo "load: store unchanged"
    echo BEGIN import; $CLI --root "$S" import "$BUSYBOX" again:1 2>&1; echo "status=$?"; echo END import
    [ "$before" = "$(snap)" ] && echo "import: store unchanged"
    dd if=/dev/zero of="$D/filler2" bs=4k 2>/dev/null
    before=$(snap)
    echo BEGIN label; $CLI --root "$S" build -t full "$LABEL" 2>&1 >/dev/null; echo "status=$?"; echo END label
    [ "$before" = "$(snap)" ] && echo "label: store unchanged" || diff <(echo "$before") <(snap) >&2
    echo "tmp: $(ls -A "$S/graph/_tmp" | wc -l) entries"
    echo "S=$S"
  `, { BUSYBOX: await busyboxTar(), WARM: warm, LABEL: label, ARCHIVE: archive });
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  const store = /S=(\S+)/.exec(r.stdout)![1]!;
  for (const name of ['load', 'import', 'label']) {
    const out = section(r.stdout, name);
    assert.match(out, /status=1\n$/, `${name}: ${out}`);
    oneLine({ code: 1, stderr: out.replace(/status=1\n$/, '') }, /no space left on device/, name);
    assert.ok(out.includes(store), `${name} names the store's path: ${out}`);
    assert.match(r.stdout, new RegExp(`${name}: store unchanged`), `${name} left the store as it was`);
  }
  assert.match(r.stdout, /tmp: 0 entries/);
});

test('a reader that goes away (| head) ends the output quietly; the build still finishes', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN echo one; echo two; echo three\nLABEL done=yes\n' });
  for (let i = 0; i < 3; i++) assert.equal((await slipway(root, ['build', '-t', `s${i}`, ctx])).code, 0);
  const cli = `${process.execPath} ${CLI} --root ${root}`;
  const stats = spawnSync('bash', ['-c', `set -o pipefail; ${cli} stats | head -1; echo "status=\${PIPESTATUS[0]}" >&2`], { encoding: 'utf8' });
  assert.match(stats.stdout, /^Builds: 3, /);
  assert.equal(stats.stderr, 'status=0\n');
  const build = spawnSync('bash', ['-c', `${cli} build --no-cache -t piped ${ctx} | head -1; echo "status=\${PIPESTATUS[0]}" >&2`], { encoding: 'utf8' });
  assert.equal(build.stdout, 'Step 1/3 : FROM busybox\n');
  assert.equal(build.stderr, 'status=0\n');
  const images = await slipway(root, ['images', 'piped']);
  assert.match(images.stdout, /^piped\s+latest\s/m, 'the build finished and tagged its image');
  // save stops quietly, with the status of a program SIGPIPE ended (the archive is incomplete).
  for (const format of ['docker', 'oci']) {
    const save = spawnSync('bash', ['-c', `${cli} save --format ${format} busybox | head -c 100 >/dev/null; echo "status=\${PIPESTATUS[0]}" >&2`], { encoding: 'utf8' });
    assert.equal(save.stderr, 'status=141\n', format);
  }
  assert.deepEqual(await fs.readdir(path.join(root, 'graph', '_tmp')), []);
});

test('load from a terminal says stdin is empty instead of waiting', async (t) => {
  const root = await storeWithBusybox();
  const r = spawnSync('script', ['-qec', `${process.execPath} ${CLI} --root ${root} load`, '/dev/null'], { encoding: 'utf8', timeout: 20_000 });
  if (r.error) return t.skip(`script: ${r.error.message}`);
  assert.equal(r.status, 1);
  assert.equal(r.stdout.replace(/\r/g, ''), 'requested load from stdin, but stdin is empty\n');
});
