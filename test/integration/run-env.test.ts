/**
 * The environment of a RUN step and of `slipway run`, as Docker gives a container: the default
 * PATH, HOSTNAME (the container's short id, which is also its hostname), the config's Env, and
 * HOME from the user's passwd entry when the Env has none.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeContext, slipway, storeWithBusybox } from '../support/cli.js';

test('RUN sees PATH, HOSTNAME (its container id) and HOME from passwd; `run` gets HOME the same way', async () => {
  const root = await storeWithBusybox();
  const ctx = await makeContext({ Dockerfile: 'FROM busybox\nENV GREETING=hi\nRUN env | sort | grep -v -e ^PWD= -e ^SHLVL=; echo "host=$(hostname)"\n' });
  const r = await slipway(root, ['build', '-t', 'envs', ctx]);
  assert.equal(r.code, 0, r.stderr);
  const container = /Step 3\/3 : RUN [^\n]*\n ---> Cache miss[^\n]*\n ---> Running in ([0-9a-f]{12})\n/.exec(r.stdout)?.[1];
  assert.ok(container, r.stdout);
  const lines = r.stdout.slice(r.stdout.indexOf(`Running in ${container}\n`)).split('\n').slice(1, 6);
  assert.deepEqual(lines, [
    'GREETING=hi', 'HOME=/root', `HOSTNAME=${container}`, 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', `host=${container}`,
  ]);
  const nobody = await slipway(root, ['run', '--rm', '--user', 'nobody', 'busybox', 'sh', '-c', 'echo "$HOME"']);
  assert.equal(nobody.stdout, '/home\n', nobody.stderr);
  const unknown = await slipway(root, ['run', '--rm', '--user', '4242', 'busybox', 'sh', '-c', 'echo "$HOME"']);
  assert.equal(unknown.stdout, '/\n', unknown.stderr);
  const given = await slipway(root, ['run', '--rm', '-e', 'HOME=/x', 'busybox', 'sh', '-c', 'echo "$HOME"']);
  assert.equal(given.stdout, '/x\n', given.stderr);
});
