/**
 * Fuzzing helper: random Dockerfiles from a grammar of mostly valid, sometimes broken
 * instructions, and byte-level mutations of them and of the conformance corpus. RUN commands
 * come from a fixed list that cannot wait for long (no sleep, no reading a terminal).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mutateBytes, type Rng } from './fuzz-random.js';

/** Files every fuzzed build context holds. */
export const CONTEXT_FILES: Record<string, string> = {
  'a.txt': 'a\n', 'b.txt': 'b\n', 'dir/c.txt': 'c\n', 'dir/sub/d.sh': '#!/bin/sh\necho d\n', '.dockerignore': '*.log\n!keep.log\n', 'x.log': 'x\n',
};

const BASES = ['busybox', 'scratch', 'busybox:latest', 'nosuch', 'busybox AS base', 'base', '${BASE}', '$BASE', 'BusyBox', 'busybox AS 1bad', '0'];
const RUNS = ['true', 'false', 'echo hi > /f', 'exit 3', 'ls / > /dev/null', 'touch /a', 'mkdir -p /d/e', 'cat /etc/hostname', 'echo $A$B', '["/bin/true"]', '["echo", "x"]', 'echo "${A:-def}"'];
const WORDS = ['a', 'A', 'B', 'PATH', '1', '', 'x y', '"q"', "'s'", '\\', '$A', '${A}', '${A:-b}', '${A:+c}', '${A:?msg}', '${', '}', '=', '#', '..', '/', '\u00e9', 'ünï'];

function word(rng: Rng): string {
  if (rng.chance(0.05)) return `\${A:-${'${B:-'.repeat(1 + rng.int(400))}x${'}'.repeat(1 + rng.int(400))}}`;
  if (rng.chance(0.03)) return rng.string(1 + rng.int(3000), 'ab$\\{}"\' ');
  return Array.from({ length: 1 + rng.int(3) }, () => rng.pick(WORDS)).join(rng.pick(['', '', '_', '-', '/']));
}

function execOrShell(rng: Rng, shell: string): string {
  return rng.chance(0.4) ? JSON.stringify([shell, ...(rng.chance(0.5) ? [word(rng)] : [])]) : shell;
}

/** One instruction line (or a few, for heredocs and continuations). */
function instruction(rng: Rng): string {
  const flags = () => (rng.chance(0.2) ? `${rng.pick(['--chown=', '--chmod=', '--from=', '--frob=', '--link', '--network=', '--chown'])}${rng.pick(['1', '0:0', 'nobody', 'base', '755', '9999', '', 'none'])} ` : '');
  switch (rng.int(22)) {
    case 0: return `FROM ${rng.chance(0.1) ? '--platform=linux/amd64 ' : ''}${rng.pick(BASES)}`;
    case 1: case 2: return `RUN ${flags()}${rng.pick(RUNS)}`;
    case 3: return `ENV ${word(rng)}=${word(rng)}${rng.chance(0.3) ? ` ${word(rng)}=${word(rng)}` : ''}`;
    case 4: return `ENV ${word(rng)} ${word(rng)}`;
    case 5: return `ARG ${word(rng)}${rng.chance(0.5) ? `=${word(rng)}` : ''}`;
    case 6: return `LABEL ${word(rng)}=${word(rng)}`;
    case 7: return `COPY ${flags()}${rng.pick(['a.txt', 'dir', '*.txt', 'dir/*/d.sh', 'nosuch', '../a', '/a.txt', '.', 'x.log', '[', 'a.txt b.txt'])} ${rng.pick(['/dst/', '/dst', 'rel', '.', '/', '/dst/x/'])}`;
    case 8: return `ADD ${flags()}${rng.pick(['a.txt', 'dir', 'http://127.0.0.1:1/x', 'nosuch'])} ${rng.pick(['/add/', '/add'])}`;
    case 9: return `WORKDIR ${rng.pick(['/w', 'rel', '$A', '/w/../x', '', '${A:-/d}'])}`;
    case 10: return `USER ${rng.pick(['root', 'nobody', '1000:1000', '$A', 'nosuchuser', ''])}`;
    case 11: return `CMD ${execOrShell(rng, rng.pick(['sh', 'echo hi', '']))}`;
    case 12: return `ENTRYPOINT ${execOrShell(rng, rng.pick(['sh', '/bin/echo', '']))}`;
    case 13: return `EXPOSE ${rng.pick(['80', '80/tcp', '53/udp', 'abc', '1-5', '${P:-8080}', '99999'])}`;
    case 14: return `VOLUME ${rng.pick(['/v', '["/v", "/w"]', '', '[', '$A'])}`;
    case 15: return `HEALTHCHECK ${rng.pick(['NONE', 'CMD true', '--interval=5s CMD true', '--retries=x CMD true', '--timeout=1x CMD true', 'FOO', ''])}`;
    case 16: return `ONBUILD ${rng.pick(['RUN true', 'ONBUILD RUN x', 'FROM x', 'ENV A=1', ''])}`;
    case 17: return `SHELL ${rng.pick(['["/bin/sh", "-c"]', '/bin/sh -c', '[]', '["sh"'])}`;
    case 18: return `STOPSIGNAL ${rng.pick(['SIGTERM', '9', 'NOPE', ''])}`;
    case 19: return `COPY <<EOF /h\n${word(rng)}\nEOF`;
    case 20: return `RUN ${rng.pick(RUNS)} \\\n  ${rng.chance(0.5) ? '&& true' : ''}`;
    default: return rng.pick(['# comment', '', 'FROBNICATE x', `${word(rng)}`, '\\', '# escape=`', '# syntax=docker/dockerfile:1', 'MAINTAINER me']);
  }
}

/** A random Dockerfile: usually starting with FROM, sometimes several stages. */
export function randomDockerfile(rng: Rng): string {
  const lines: string[] = [];
  if (rng.chance(0.1)) lines.push(rng.pick(['# escape=`', '# escape=\\', 'ARG BASE=busybox']));
  if (!rng.chance(0.05)) lines.push(`FROM ${rng.chance(0.85) ? 'busybox' : rng.pick(BASES)}`);
  const n = 1 + rng.int(10);
  for (let i = 0; i < n; i++) lines.push(instruction(rng));
  return `${lines.join('\n')}\n`;
}

let corpus: string[] | undefined;
/** The Dockerfiles of the conformance corpus (seeds for mutation). */
export function corpusDockerfiles(): string[] {
  if (corpus) return corpus;
  const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/conformance/cases');
  corpus = [];
  for (const name of fs.readdirSync(dir)) {
    const file = path.join(dir, name, 'Dockerfile');
    if (fs.existsSync(file)) corpus.push(fs.readFileSync(file, 'utf8'));
  }
  return corpus;
}

/** A fuzzed Dockerfile: random, a mutated random one, or a mutated corpus one. */
export function fuzzedDockerfile(rng: Rng): string {
  const kind = rng.int(4);
  if (kind <= 1) return randomDockerfile(rng);
  const base = kind === 2 ? randomDockerfile(rng) : rng.pick(corpusDockerfiles());
  return mutateBytes(rng, Buffer.from(base), 1 + rng.int(2)).toString('utf8');
}
