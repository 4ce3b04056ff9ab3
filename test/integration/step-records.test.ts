import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { slipway, storeWithBusybox, makeContext } from '../support/cli.js';

/**
 * A built step's cache entry and history are written beside the next steps (its lease released
 * after them). A record that cannot be written still fails the build, after its steps, with the
 * reason, and tags nothing; no lease is left behind.
 */
test('a step whose cache record cannot be written fails the build, which tags nothing', async () => {
  const root = await storeWithBusybox();
  try {
    const ctx = await makeContext({ 'Dockerfile': 'FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n' });
    // Every key's folder in the cache index is a file: lookups miss, and every record's write fails.
    fs.mkdirSync(path.join(root, 'cache'), { recursive: true });
    for (let i = 0; i < 256; i++) fs.writeFileSync(path.join(root, 'cache', i.toString(16).padStart(2, '0')), 'not a folder');
    const r = await slipway(root, ['build', '-t', 'recorded', ctx]);
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, /ENOTDIR|not a directory|file already exists/i);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    assert.match(r.stdout, /Step 3\/3/, 'the steps after the first went on meanwhile');
    const repos = fs.readFileSync(path.join(root, 'repositories'), 'utf8');
    assert.doesNotMatch(repos, /recorded/);
    const leases = path.join(root, 'locks', 'steps');
    assert.deepEqual(fs.existsSync(leases) ? fs.readdirSync(leases) : [], []);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
