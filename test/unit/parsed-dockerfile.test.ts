import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import { fileURLToPath } from 'node:url';
import { parseDockerfile } from '../../src/dockerfile/parse.js';
import { parsedDockerfile } from '../../src/cache/parsed-dockerfile.js';
import { StoreLayout } from '../../src/store/layout.js';
import { SlipwayError } from '../../src/errors.js';

/** Every distinct Dockerfile of the conformance cases and the bench corpus that is on this machine. */
async function corpusDockerfiles(): Promise<Array<{ name: string; text: string }>> {
  const roots = [fileURLToPath(new URL('../../../test/conformance/cases', import.meta.url)), '/work/shared/conformance/cases', '/work/shared/bench/corpus'];
  const out: Array<{ name: string; text: string }> = [];
  for (const r of roots) {
    for (const d of await fs.readdir(r).catch(() => [] as string[])) {
      const text = await fs.readFile(path.join(r, d, 'Dockerfile'), 'utf8').catch(() => undefined);
      if (text !== undefined && !out.some((o) => o.text === text)) out.push({ name: `${path.basename(r)}/${d}`, text });
    }
  }
  return out;
}

const tempRoot = () => fs.mkdtemp(path.join(os.tmpdir(), 'slipway-parsed-'));

/** One of each step kind, with the fields a parse leaves undefined (JSON would drop them). */
const SAMPLE = `# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM \${BASE} AS one
ENV A=1 B="two words"
LABEL x=y
RUN --mount=type=cache,target=/c echo hi && \\
    echo there
COPY --chown=1:2 a b /dst/
ADD --checksum=sha256:${'0'.repeat(64)} https://example.com/x /x
WORKDIR /w
USER nobody
EXPOSE 80/tcp
VOLUME ["/v"]
HEALTHCHECK --interval=5s CMD true
SHELL ["/bin/sh", "-c"]
ONBUILD RUN echo later
STOPSIGNAL SIGTERM
ENTRYPOINT ["sh"]
CMD ["-c", "echo"]
FROM one
COPY --from=one /dst /again
RUN <<EOF
echo heredoc
EOF
`;

test('a kept parse is the parse: every corpus Dockerfile survives the round trip through the store unchanged', async () => {
  const files = [{ name: 'sample', text: SAMPLE }, ...(await corpusDockerfiles())];
  assert.ok(files.length > 10, `only ${files.length} Dockerfiles found`);
  const layout = new StoreLayout(await tempRoot());
  try {
    for (const { name, text } of files) {
      let direct: ReturnType<typeof parseDockerfile>;
      try {
        direct = parseDockerfile(text, 'Dockerfile');
      } catch {
        continue; // the conformance cases include Dockerfiles that must fail; see the next tests
      }
      const first = await parsedDockerfile(layout, text, 'Dockerfile');
      assert.equal(first.cached, false, name);
      assert.deepStrictEqual(first.df, direct, name);
      await first.save();
      const second = await parsedDockerfile(layout, text, 'Dockerfile');
      assert.equal(second.cached, true, `${name}: the second parse comes from the store`);
      assert.deepStrictEqual(second.df, direct, name);
    }
  } finally {
    await fs.rm(layout.root, { recursive: true, force: true });
  }
});

test('an entry is read, not reparsed; a damaged one is only a miss', async () => {
  const layout = new StoreLayout(await tempRoot());
  try {
    const text = 'FROM busybox\nRUN echo a\n';
    const first = await parsedDockerfile(layout, text, 'Dockerfile');
    await first.save();
    const [entry] = await fs.readdir(path.join(layout.root, 'parsed'));
    const file = path.join(layout.root, 'parsed', entry!);
    // Planting another parse under this key shows the entry is what the build gets.
    const other = parseDockerfile('FROM busybox\nRUN echo planted\n');
    await fs.writeFile(file, v8.serialize(other));
    assert.deepStrictEqual((await parsedDockerfile(layout, text, 'Dockerfile')).df, other);
    for (const junk of [Buffer.from('not v8 at all'), Buffer.alloc(0), v8.serialize({ steps: 'x' }), v8.serialize(null)]) {
      await fs.writeFile(file, junk);
      const again = await parsedDockerfile(layout, text, 'Dockerfile');
      assert.equal(again.cached, false);
      assert.deepStrictEqual(again.df, parseDockerfile(text));
    }
  } finally {
    await fs.rm(layout.root, { recursive: true, force: true });
  }
});

test('the file name is part of the key (messages name it); nothing is written before save', async () => {
  const layout = new StoreLayout(await tempRoot());
  try {
    const text = 'FROM busybox\nRUN echo a\n';
    const a = await parsedDockerfile(layout, text, 'Dockerfile');
    await assert.rejects(fs.stat(path.join(layout.root, 'parsed')), 'no entry before save');
    await a.save();
    const b = await parsedDockerfile(layout, text, 'other.Dockerfile');
    assert.equal(b.cached, false);
    assert.equal(b.df.file, 'other.Dockerfile');
    await b.save();
    assert.equal((await fs.readdir(path.join(layout.root, 'parsed'))).length, 2);
  } finally {
    await fs.rm(layout.root, { recursive: true, force: true });
  }
});

test('a bad Dockerfile fails as the parser says, every time, and writes nothing', async () => {
  const layout = new StoreLayout(await tempRoot());
  try {
    for (let i = 0; i < 2; i++) {
      await assert.rejects(parsedDockerfile(layout, 'FROM busybox\nFROBNICATE now\n', 'Dockerfile'), (e: unknown) => {
        assert.ok(e instanceof SlipwayError);
        assert.equal(e.code, 'ERR_DOCKERFILE_SYNTAX');
        assert.match(e.message, /^Dockerfile:2: unknown instruction: FROBNICATE/);
        return true;
      });
    }
    assert.deepEqual(await fs.readdir(layout.root), []);
  } finally {
    await fs.rm(layout.root, { recursive: true, force: true });
  }
});
