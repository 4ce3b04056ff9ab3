/**
 * The client side of the resident engine reads its HTTP answer from raw socket bytes: chunked
 * or sized bodies, split anywhere (inside the head, a chunk size, a CRLF or a UTF-8 character),
 * give the same lines; a refusal's body comes back whole; malformed answers throw.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NdjsonAnswer } from '../../src/cli/ndjson-answer.js';

function read(bytes: Buffer, splits: number[]): { lines: string[]; refused?: [number, string] } {
  const out: { lines: string[]; refused?: [number, string] } = { lines: [] };
  const a = new NdjsonAnswer((status, body) => { out.refused = [status, body]; }, (l) => out.lines.push(l));
  let at = 0;
  for (const s of [...splits, bytes.length]) {
    a.push(bytes.subarray(at, s));
    at = s;
  }
  a.end();
  return out;
}

const chunk = (s: string) => { const b = Buffer.from(s); return Buffer.concat([Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from('\r\n')]); };
const LINES = ['{"event":{"type":"step","text":"RUN echo héllo ☃"}}', '{"event":{"type":"output","text":"x"}}', '{"done":{"id":"abc"}}'];
const CHUNKED = Buffer.concat([
  Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n'),
  // A line split across chunks, and a chunk holding the end of one line and all of the next.
  chunk(LINES[0]!.slice(0, 30)), chunk(`${LINES[0]!.slice(30)}\n${LINES[1]}\n`), chunk(`${LINES[2]}\n`), Buffer.from('0\r\n\r\n'),
]);

test('a chunked answer gives the same lines however the socket splits it', () => {
  assert.deepEqual(read(CHUNKED, []).lines, LINES);
  for (let s = 1; s < CHUNKED.length; s++) assert.deepEqual(read(CHUNKED, [s]).lines, LINES, `split at ${s}`);
  const every = Array.from({ length: CHUNKED.length - 1 }, (_, i) => i + 1);
  assert.deepEqual(read(CHUNKED, every).lines, LINES, 'one byte at a time');
});

test('a sized answer and one delimited by the connection\'s end give the lines too', () => {
  const body = Buffer.from(`${LINES.join('\n')}\n`);
  const sized = Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body]);
  assert.deepEqual(read(sized, [20, 70]).lines, LINES);
  const closed = Buffer.concat([Buffer.from('HTTP/1.0 200 OK\r\n\r\n'), body]);
  assert.deepEqual(read(closed, [5]).lines, LINES);
});

test('a refusal hands over its status and whole body, and no line', () => {
  const body = '{"message":"a build from a local folder is taken only on a unix socket that only root can open"}';
  const r = read(Buffer.concat([Buffer.from('HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n'), chunk(body.slice(0, 10)), chunk(body.slice(10)), Buffer.from('0\r\n\r\n')]), [3, 50]);
  assert.deepEqual(r.lines, []);
  assert.deepEqual(r.refused, [403, body]);
  const empty = read(Buffer.from('HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n'), []);
  assert.deepEqual(empty.refused, [500, '']);
});

test('malformed answers throw', () => {
  assert.throws(() => read(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n'), []), /not an HTTP answer/);
  assert.throws(() => read(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'), []), /bad chunk size/);
  assert.throws(() => read(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY\r\n'), []), /does not end with CRLF/);
  assert.throws(() => read(Buffer.alloc(70 * 1024, 'a'), []), /head is over 64 KiB/);
});
