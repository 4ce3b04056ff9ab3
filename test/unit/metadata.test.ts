import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDockerfile } from '../../src/dockerfile/parse.js';
import { applyMetadata, isMetadataStep, type StageState } from '../../src/dockerfile/metadata.js';
import { emptyContainerConfig } from '../../src/image-config.js';

/** Applies the metadata instructions of `text` (no FROM) in order: each step's history text and config. */
function apply(text: string): { texts: string[]; state: StageState } {
  const state: StageState = { config: emptyContainerConfig(), args: new Map(), cmdSet: false, buildArgs: {}, globalArgs: new Map(), file: 'Dockerfile', escape: '\\' };
  const texts: string[] = [];
  for (const step of parseDockerfile(text, 'Dockerfile').steps) {
    assert.ok(isMetadataStep(step), step.kind);
    const { config, cmd } = applyMetadata(step, state);
    state.config = config;
    texts.push(cmd.at(-1)!);
  }
  return { texts, state };
}

const S = 1_000_000_000;

test('HEALTHCHECK: a field it leaves out keeps the earlier one\'s value, as the daemon\'s config merge does; its history text does not', () => {
  // Docker 20.10.24's legacy builder (recorded: test/conformance-derived/cases/healthcheck-none-reset).
  const none = apply('HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD true\nHEALTHCHECK NONE\n');
  assert.deepEqual(none.state.config.Healthcheck, { Test: ['NONE'], Interval: 30 * S, Timeout: 5 * S, StartPeriod: 10 * S, Retries: 3 });
  assert.equal(none.texts[1], 'HEALTHCHECK &{["NONE"] "0s" "0s" "0s" \'\\x00\'}');
  const partial = apply('HEALTHCHECK --interval=5s --retries=2 CMD a\nHEALTHCHECK --timeout=3s CMD ["b", "c"]\n');
  assert.deepEqual(partial.state.config.Healthcheck, { Test: ['CMD', 'b', 'c'], Interval: 5 * S, Timeout: 3 * S, Retries: 2 });
  assert.equal(partial.texts[1], 'HEALTHCHECK &{["CMD" "b" "c"] "0s" "3s" "0s" \'\\x00\'}');
  // Its own values win; nothing before it: only its own.
  const own = apply('HEALTHCHECK --interval=5s CMD a\nHEALTHCHECK --interval=7s CMD b\n');
  assert.deepEqual(own.state.config.Healthcheck, { Test: ['CMD-SHELL', 'b'], Interval: 7 * S });
  assert.deepEqual(apply('HEALTHCHECK CMD a\n').state.config.Healthcheck, { Test: ['CMD-SHELL', 'a'] });
});

test('ARG: defaults are expanded at once against the ARGs before the line, and the history shows them expanded', () => {
  // Docker 20.10.24: `ARG a=1 b=$a c=${a}x` after `ARG a=0` is `ARG a=1 b=0 c=0x` in the history.
  const { texts, state } = apply('ARG a=0\nARG a=1 b=$a c=${a}x\n');
  assert.equal(texts[1], 'ARG a=1 b=0 c=0x');
  assert.deepEqual([...state.args], [['a', '1'], ['b', '0'], ['c', '0x']]);
});

test('EXPOSE: the words are sorted as written, then each expanded into words; the config\'s maps are in Go\'s key order', () => {
  // Docker 20.10.24 (recorded: test/conformance-derived/cases/expose-sorted-before-expansion).
  const { texts, state } = apply('ENV P="9 1"\nEXPOSE 80 $P 7/udp\nLABEL z=1 a=2\nVOLUME /v2 /v1\n');
  assert.equal(texts[1], 'EXPOSE 9 1 7/udp 80');
  assert.deepEqual(Object.keys(state.config.ExposedPorts!), ['1/tcp', '7/udp', '80/tcp', '9/tcp']);
  assert.deepEqual(Object.keys(state.config.Labels!), ['a', 'z']);
  assert.deepEqual(Object.keys(state.config.Volumes!), ['/v1', '/v2']);
});
