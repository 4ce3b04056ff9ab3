import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HOST_TOOLS, hostTool, requireHostTools } from '../../src/snapshot/host-tools.js';
import { SlipwayError } from '../../src/errors.js';

test('every host tool names the Debian package that provides it', () => {
  for (const [tool, { pkg, why }] of Object.entries(HOST_TOOLS)) {
    assert.match(pkg, /^[a-z0-9.+-]+$/, tool);
    assert.ok(why.length > 0, tool);
  }
});

test('a tool missing from the search path: ERR_SANDBOX, one line naming the package', () => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-nopath-'));
  assert.throws(() => hostTool('bzip2', empty), (e: unknown) => {
    assert.ok(e instanceof SlipwayError);
    assert.equal(e.code, 'ERR_SANDBOX');
    assert.equal(e.message, 'bzip2 is not installed (to decompress bzip2 archives): install the Debian package bzip2 (apt-get install bzip2)');
    return true;
  });
  assert.throws(() => requireHostTools(['cp', 'mount'], empty), /cp is not installed \(.*\): install the Debian package coreutils/);
});

test('found once per process: the path is remembered, not looked up on every use', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'slipway-path-'));
  // A file that is not executable does not count.
  fs.writeFileSync(path.join(dir, 'xz'), '#!/bin/sh\n', { mode: 0o644 });
  assert.throws(() => hostTool('xz', dir), /install the Debian package xz-utils/);
  fs.chmodSync(path.join(dir, 'xz'), 0o755);
  assert.equal(hostTool('xz', dir), path.join(dir, 'xz'));
  fs.rmSync(path.join(dir, 'xz'));
  assert.equal(hostTool('xz', dir), path.join(dir, 'xz'));
});
