/**
 * The fuzzing pass with a small count (the large run is by hand: `node dist/test/fuzz/fuzz.js
 * --count 1000`). Every random or mutated Dockerfile, `load` archive and ADD tar must succeed
 * or fail cleanly: no stack trace, no hang, nothing left behind, the store unchanged on error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fuzz } from '../fuzz/fuzz.js';

test('fuzz: 24 Dockerfiles and 24 archives end in success or a clean error', { timeout: 240_000 }, async () => {
  const seed = Number(process.env['SLIPWAY_FUZZ_SEED'] ?? Date.now() % 1e9);
  const s = await fuzz({ dockerfiles: 24, archives: 24, seed, concurrency: 2, timeoutMs: 30_000 });
  assert.equal(s.cases, 48);
  assert.deepEqual(s.failures, [], `seed ${seed}: ${JSON.stringify(s.failures, null, 2)}`);
  // The pass must reach both outcomes of each kind it can, or it tests nothing.
  assert.ok((s.byKind['load']?.['clean-error'] ?? 0) > 0 && (s.byKind['dockerfile']?.['clean-error'] ?? 0) > 0, JSON.stringify(s.byKind));
});
