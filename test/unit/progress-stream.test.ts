/** The push/pull answer writer: what is held back, what is thinned out, and how errors come out. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServerResponse } from 'node:http';
import { ProgressStream, type StreamMessage } from '../../src/api/json-stream.js';
import { SlipwayError } from '../../src/errors.js';

/** Just enough of a ServerResponse to record what was sent. */
class FakeResponse {
  status: number | undefined;
  headers: Record<string, string | number> = {};
  body = '';
  ended = false;
  destroyed = false;
  get headersSent(): boolean {
    return this.status !== undefined;
  }
  setHeader(k: string, v: string | number): void {
    this.headers[k] = v;
  }
  writeHead(status: number, headers: Record<string, string | number> = {}): this {
    this.status = status;
    Object.assign(this.headers, headers);
    return this;
  }
  write(s: string): boolean {
    this.body += s;
    return true;
  }
  end(s = ''): void {
    this.body += s;
    this.ended = true;
  }
  destroy(): void {
    this.destroyed = true;
  }
  messages(): unknown[] {
    return this.body.split('\r\n').filter(Boolean).map((l) => JSON.parse(l) as unknown);
  }
}

const pullingFrom = (m: StreamMessage) => (m.status ?? '').startsWith('Pulling from ');

function stream(opts: ConstructorParameters<typeof ProgressStream>[1] = {}): { res: FakeResponse; out: ProgressStream } {
  const res = new FakeResponse();
  return { res, out: new ProgressStream(res as unknown as ServerResponse, opts) };
}

test('held messages go out with the first real one, in order; an empty status is dropped as moby does', () => {
  const { res, out } = stream({ holdWhile: pullingFrom });
  out.message({ status: 'Pulling from thoward/x', id: 'latest' });
  assert.equal(res.status, undefined, 'nothing written while only "Pulling from" is known');
  out.message({ status: 'Pulling fs layer', id: 'aaaaaaaaaaaa', progressDetail: {} });
  out.message({ status: '', progressDetail: {}, aux: { Tag: '1', Digest: 'sha256:x', Size: 1 } });
  out.end();
  assert.equal(res.status, 200);
  assert.deepEqual(res.messages(), [
    { status: 'Pulling from thoward/x', id: 'latest' },
    { status: 'Pulling fs layer', id: 'aaaaaaaaaaaa', progressDetail: {} },
    { progressDetail: {}, aux: { Tag: '1', Digest: 'sha256:x', Size: 1 } },
  ]);
  assert.ok(res.ended);
});

test('errors: a plain HTTP error before the first message, a stream error after it, or in the stream when asked', () => {
  const cases: Array<{ name: string; before: StreamMessage[]; inStream: boolean; status: number; body: unknown }> = [
    { name: 'held only', before: [{ status: 'Pulling from a/b', id: 'latest' }], inStream: false, status: 404, body: { message: 'manifest unknown' } },
    { name: 'after progress', before: [{ status: 'Pushed', id: 'aaaaaaaaaaaa' }], inStream: false, status: 200, body: { errorDetail: { code: 1, message: 'manifest unknown' }, error: 'manifest unknown' } },
    { name: 'in stream', before: [], inStream: true, status: 200, body: { errorDetail: { code: 1, message: 'manifest unknown' }, error: 'manifest unknown' } },
  ];
  for (const c of cases) {
    const { res, out } = stream({ holdWhile: pullingFrom });
    for (const m of c.before) out.message(m);
    out.fail(new SlipwayError('ERR_IMAGE_NOT_FOUND', 'manifest unknown'), { inStream: c.inStream });
    assert.equal(res.status, c.status, c.name);
    const msgs = c.status === 200 ? res.messages() : [JSON.parse(res.body) as unknown];
    assert.deepEqual(msgs[msgs.length - 1], c.body, c.name);
  }
});

test('progress updates of one layer are thinned out, but the last one and other layers pass', () => {
  const { res, out } = stream({ throttleMs: 60_000 });
  for (const current of [1, 2, 3]) out.message({ status: 'Pushing', id: 'a', progressDetail: { current, total: 4 } });
  out.message({ status: 'Pushing', id: 'b', progressDetail: { current: 1, total: 4 } });
  out.message({ status: 'Pushing', id: 'a', progressDetail: { current: 4, total: 4 } });
  out.message({ status: 'Pushed', id: 'a', progressDetail: {} });
  out.end();
  assert.deepEqual(res.messages().map((m) => {
    const x = m as StreamMessage;
    return `${x.id} ${x.status} ${x.progressDetail?.current ?? ''}`;
  }), ['a Pushing 1', 'b Pushing 1', 'a Pushing 4', 'a Pushed ']);
});
