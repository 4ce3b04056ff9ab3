/**
 * Reads one HTTP/1.1 answer from raw socket bytes: the status line and headers, then a body
 * that is chunked, sized by Content-Length, or delimited by the connection's end. A 200's body
 * is handed on line by line (newline-delimited JSON); any other status's body is collected and
 * handed over whole when it is complete. Only what the engine's local build route sends is
 * needed, but whatever arrives is checked: a malformed answer throws from `push`.
 */
export class NdjsonAnswer {
  private buf: Buffer = Buffer.alloc(0);
  private status = 0;
  /** Bytes of body left: in the current chunk when chunked, in the body when sized, Infinity until the end otherwise. */
  private left = 0;
  private chunked = false;
  private state: 'head' | 'size' | 'data' | 'crlf' | 'trailer' | 'done' = 'head';
  private text: Buffer[] = [];
  private line: Buffer = Buffer.alloc(0);

  constructor(private readonly onRefused: (status: number, body: string) => void, private readonly onLine: (line: string) => void) {}

  push(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    for (;;) {
      if (this.state === 'head') {
        const end = this.buf.indexOf('\r\n\r\n');
        if (end < 0) {
          if (this.buf.length > 64 * 1024) throw new Error('the answer head is over 64 KiB');
          return;
        }
        this.readHead(this.buf.subarray(0, end).toString('latin1'));
        this.buf = this.buf.subarray(end + 4);
      } else if (this.state === 'size' || this.state === 'crlf' || this.state === 'trailer') {
        const nl = this.buf.indexOf('\r\n');
        if (nl < 0) return;
        const l = this.buf.subarray(0, nl).toString('latin1');
        this.buf = this.buf.subarray(nl + 2);
        this.chunkLine(l);
      } else if (this.state === 'data') {
        if (this.buf.length === 0) return;
        const n = Math.min(this.left, this.buf.length);
        this.body(this.buf.subarray(0, n));
        this.buf = this.buf.subarray(n);
        this.left -= n;
        if (this.left === 0) this.finishData();
      } else {
        return;
      }
    }
  }

  /** The connection ended: a body delimited by the end is complete now. */
  end(): void {
    if (this.state === 'data' && this.left === Infinity) this.complete();
  }

  private readHead(head: string): void {
    const [statusLine, ...fields] = head.split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '');
    if (!m) throw new Error(`not an HTTP answer: ${JSON.stringify((statusLine ?? '').slice(0, 80))}`);
    this.status = Number(m[1]);
    const headers = new Map(fields.map((f) => [f.slice(0, f.indexOf(':')).trim().toLowerCase(), f.slice(f.indexOf(':') + 1).trim()]));
    this.chunked = /\bchunked\b/i.test(headers.get('transfer-encoding') ?? '');
    const length = headers.get('content-length');
    if (this.chunked) this.state = 'size';
    else {
      this.left = length !== undefined && /^\d+$/.test(length) ? Number(length) : Infinity;
      this.state = 'data';
      if (this.left === 0) this.complete();
    }
  }

  private chunkLine(l: string): void {
    if (this.state === 'crlf') {
      if (l !== '') throw new Error('a chunk does not end with CRLF');
      this.state = 'size';
    } else if (this.state === 'trailer') {
      if (l === '') this.complete();
    } else {
      const size = /^([0-9a-fA-F]{1,8})(;.*)?$/.exec(l);
      if (!size) throw new Error(`a bad chunk size: ${JSON.stringify(l.slice(0, 20))}`);
      this.left = parseInt(size[1]!, 16);
      this.state = this.left === 0 ? 'trailer' : 'data';
    }
  }

  private finishData(): void {
    if (this.chunked) this.state = 'crlf';
    else this.complete();
  }

  /** Lines are split on the byte: a newline is never inside a UTF-8 character, wherever a chunk ends. */
  private body(b: Buffer): void {
    if (this.status !== 200) {
      this.text.push(b);
      return;
    }
    this.line = this.line.length === 0 ? b : Buffer.concat([this.line, b]);
    for (let nl = this.line.indexOf(10); nl >= 0; nl = this.line.indexOf(10)) {
      const l = this.line.subarray(0, nl).toString('utf8');
      this.line = this.line.subarray(nl + 1);
      if (l.trim() !== '') this.onLine(l);
    }
  }

  private complete(): void {
    this.state = 'done';
    if (this.status !== 200) this.onRefused(this.status, Buffer.concat(this.text).toString('utf8'));
  }
}
