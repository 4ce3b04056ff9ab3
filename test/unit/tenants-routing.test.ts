import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseTenantTokens, TenantTokens } from '../../src/api/tenant-tokens.js';
import { TENANT_NAME, checkTenant, tenantRoot } from '../../src/farm/namespace.js';
import { farmImageName } from '../../src/farm/tenant-images.js';
import { leadingInstructions, routeKeys } from '../../src/farm/route-keys.js';
import { parseSentinelUrl } from '../../src/farm/connection.js';

const T = 'x'.repeat(16);

test('tokens file: one line per token, errors name FILE:N', () => {
  const t = parseTenantTokens(`# comment\nalice ${T}a\n\nbob ${T}b operator # trailing\n`, 'f');
  assert.equal(t.size, 2);
  assert.deepEqual([...t.values()], [{ tenant: 'alice', operator: false }, { tenant: 'bob', operator: true }]);
  for (const [text, msg] of [
    [`alice`, /^f:1: expected "TENANT TOKEN \[operator\]"/],
    [`alice ${T} admin`, /^f:1: expected/],
    [`Alice ${T}`, /^f:1: invalid tenant "Alice"/],
    [`../x ${T}`, /^f:1: invalid tenant/],
    [`a short`, /^f:1: the token must have at least 16 characters/],
    [`a ${T}\nb ${T}`, /^f:2: this token is already listed/],
  ] as const) assert.throws(() => parseTenantTokens(text, 'f'), (e: Error) => msg.test(e.message));
});

test('tokens file: a change is taken up on lookup; a broken file keeps the tokens in force', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'slipway-tokens-'));
  try {
    const f = path.join(dir, 'tenants');
    await fs.writeFile(f, `alice ${T}a\n`, { mode: 0o600 });
    const logs: string[] = [];
    const tokens = await TenantTokens.open(f, (l) => logs.push(l));
    assert.equal((await tokens.lookup(`${T}a`))?.tenant, 'alice');
    assert.equal(await tokens.lookup(`${T}b`), undefined);
    await fs.writeFile(f, `bob ${T}b\n`);
    assert.equal(await tokens.reload(), true);
    assert.equal((await tokens.lookup(`${T}b`))?.tenant, 'bob');
    assert.equal(await tokens.lookup(`${T}a`), undefined);
    await fs.writeFile(f, 'garbage\n');
    assert.equal(await tokens.reload(), false);
    assert.equal((await tokens.lookup(`${T}b`))?.tenant, 'bob');
    assert.match(logs.at(-1)!, /not reloaded, the previous tokens stay in force/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('tenant names are safe as Redis key and registry path components', () => {
  for (const ok of ['a', 'alice', 'team-1', 'a_b']) assert.ok(TENANT_NAME.test(ok), ok);
  for (const bad of ['', 'A', '-a', 'a-', 'a--b', 'a/b', 'a:b', '..', 'a.b', 'x'.repeat(64)]) assert.throws(() => checkTenant(bad), bad);
  assert.equal(tenantRoot('/r', 'default'), '/r');
  assert.equal(tenantRoot('/r', 'alice'), '/r/tenants/alice');
});

test('a tenant\'s tags stay in its namespace of the farm\'s registry', () => {
  assert.equal(farmImageName('reg:5000', 'default', 'app:1'), 'reg:5000/app:1');
  assert.equal(farmImageName('reg:5000', 'alice', 'app:1'), 'reg:5000/alice/app:1');
  assert.equal(farmImageName('reg:5000', 'alice', 'reg:5000/bob/app'), 'reg:5000/alice/bob/app');
  assert.equal(farmImageName('reg:5000', 'alice', 'other:5000/x'), 'reg:5000/alice/other:5000/x');
});

test('route keys: the same leading steps share keys, a changed step or context or tenant does not', () => {
  const base = { tenant: 'a', dockerfile: 'Dockerfile', contextDigest: 'sha256:1', buildArgs: {} };
  const df = '# syntax\nFROM busybox\nRUN echo a \\\n  b\nCOPY . /app\nRUN make\n';
  assert.deepEqual(leadingInstructions(df), ['FROM busybox', 'RUN echo a b', 'COPY . /app', 'RUN make']);
  const k = routeKeys({ ...base, dockerfileText: df });
  assert.equal(k.length, 3, 'no key for FROM alone');
  const otherCtx = routeKeys({ ...base, contextDigest: 'sha256:2', dockerfileText: df });
  assert.equal(otherCtx[0], k[0], 'steps before COPY do not depend on the context');
  assert.notEqual(otherCtx[1], k[1]);
  assert.notDeepEqual(routeKeys({ ...base, tenant: 'b', dockerfileText: df }), k);
  assert.notEqual(routeKeys({ ...base, dockerfileText: df.replace('echo a', 'echo z') })[0], k[0]);
  assert.notEqual(routeKeys({ ...base, buildArgs: { V: '1' }, dockerfileText: df })[0], k[0]);
});

test('redis-sentinel:// URLs name the sentinels, the master and the farm user', () => {
  assert.equal(parseSentinelUrl('redis://h:6379'), undefined);
  assert.deepEqual(parseSentinelUrl('redis-sentinel://farm:p%40ss@s1:26379,s2,10.0.0.3:26380/mymaster/2'), {
    sentinels: [{ host: 's1', port: 26379 }, { host: 's2', port: 26379 }, { host: '10.0.0.3', port: 26380 }], name: 'mymaster', username: 'farm', password: 'p@ss', db: 2,
  });
  assert.throws(() => parseSentinelUrl('redis-sentinel://s1:26379'), /invalid Sentinel URL/);
  assert.throws(() => parseSentinelUrl('redis-sentinel://s1:99999/m'), /invalid Sentinel address/);
});
