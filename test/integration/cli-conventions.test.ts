/**
 * Docker's conventions through the CLI: `unknown flag: --x`, global flags anywhere on the line,
 * and `--format` Go templates for images, history and inspect.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { CLI, slipway, storeWithBusybox, makeContext } from '../support/cli.js';

/** The CLI without the helper's leading `--root`. */
function bare(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, SLIPWAY_ROOT: '/nonexistent-slipway-root' } });
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

test('unknown flags are reported in cobra\'s words, exit 125, one line plus the help hint', async () => {
  const root = await storeWithBusybox();
  const r = await slipway(root, ['build', '--frobnicate', '.']);
  assert.equal(r.code, 125);
  assert.equal(r.stderr, "unknown flag: --frobnicate\nSee 'slipway build --help'.\n");
  const short = await slipway(root, ['images', '-z']);
  assert.equal(short.stderr, "unknown shorthand flag: 'z' in -z\nSee 'slipway images --help'.\n");
  const missing = await slipway(root, ['build', '.', '-t']);
  assert.equal(missing.stderr, "flag needs an argument: --tag\nSee 'slipway build --help'.\n");
  assert.equal(bare(['--frob', 'images']).stderr, "unknown flag: --frob\nSee 'slipway --help'.\n");
});

test('--root and --debug work anywhere on the line; run\'s container arguments keep theirs', async () => {
  const root = await storeWithBusybox();
  const after = bare(['images', '--root', root, '--format', '{{.Repository}}']);
  assert.equal(after.code, 0, after.stderr);
  assert.equal(after.stdout, 'busybox\n');
  assert.equal(bare(['images', `--root=${root}`, '-q']).code, 0);
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nRUN true\n' });
  const b = bare(['build', '-q', ctx, '--root', root]);
  assert.equal(b.code, 0, b.stderr);
  const debug = bare(['inspect', 'nosuchimage', '--debug', '--root', root]);
  assert.notEqual(debug.code, 0);
  assert.match(debug.stderr, /No such image/);
  const run = bare(['run', '--root', root, '--rm', 'busybox', 'echo', '--root', 'x', '--debug']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, '--root x --debug\n');
  assert.match(bare(['images', '--root']).stderr, /flag needs an argument: --root/);
});

test('images, history and inspect take Go templates: fields, json, table', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nLABEL team=x\nRUN echo hi > /hi\n' });
  const id = (await slipway(root, ['build', '-q', '-t', 'fmt:1', ctx])).stdout.trim();
  const table = await slipway(root, ['images', '--format', 'table {{.Repository}}\t{{.Tag}}\t{{.ID}}']);
  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split('\n');
  assert.match(lines[0]!, /^REPOSITORY\s{3,}TAG\s{3,}IMAGE ID$/);
  assert.ok(lines.some((l) => new RegExp(`^fmt\\s+1\\s+${id.slice(7, 19)}$`).test(l)), table.stdout);
  const json = (await slipway(root, ['images', '--format', '{{json .}}', 'fmt'])).stdout.trim();
  const row = JSON.parse(json);
  assert.equal(row.Repository, 'fmt');
  assert.equal(row.Tag, '1');
  assert.equal(row.ID, id.slice(7, 19));
  assert.deepEqual(Object.keys(row), [...Object.keys(row)].sort());
  assert.equal((await slipway(root, ['images', '--format', '{{.Repository}}:{{.Tag}}', 'fmt'])).stdout, 'fmt:1\n');
  const hist = await slipway(root, ['history', '--format', '{{.ID}}|{{.CreatedBy}}', 'fmt:1']);
  assert.equal(hist.code, 0, hist.stderr);
  assert.match(hist.stdout.split('\n')[0]!, new RegExp(`^${id.slice(7, 19)}\\|/bin/sh -c echo hi > /hi$`));
  const htable = await slipway(root, ['history', '--format', 'table {{.ID}}\t{{.Size}}', 'fmt:1']);
  assert.match(htable.stdout.split('\n')[0]!, /^IMAGE\s+SIZE$/);
  const insp = await slipway(root, ['inspect', '--format', '{{.Id}} {{json .Config.Labels}} {{.Config.Labels.team}}', 'fmt:1']);
  assert.equal(insp.stdout, `${id} {"team":"x"} x\n`);
  const bad = await slipway(root, ['images', '--format', '{{.Nope}}']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /can't evaluate field Nope/);
  const ctl = await slipway(root, ['inspect', '--format', '{{range .RepoTags}}{{.}}{{end}}', 'fmt:1']);
  assert.notEqual(ctl.code, 0);
  assert.match(ctl.stderr, /\{\{range\}\} is not supported/);
  // json still prints the documented objects, one per line.
  assert.equal(JSON.parse((await slipway(root, ['images', '--format', 'json', 'fmt'])).stdout).Repository, 'fmt');
});
