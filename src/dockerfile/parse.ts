import { DockerfileParser } from 'dockerfile-ast';
import { dockerfileError } from '../errors.js';
import { splitWords } from './expand.js';
import { checkRunMount, parseSecurity } from './run-mounts.js';
import { checkSyntaxDirective, readDirectives } from './directives.js';
import { checkCopyFlags } from './copy-flags.js';
import type { CommandForm, CopyStep, Dockerfile, Heredoc, Step, StepBase } from './step.js';

/**
 * The only importer of dockerfile-ast. It finds instruction boundaries, keywords and the escape
 * directive; everything it gets wrong (exec-form JSON, errors, 0-based lines, continuation
 * joining) is done here by Docker's rules, so `Step.text` reads exactly as Docker prints it.
 */

const KNOWN = new Set([
  'FROM', 'RUN', 'CMD', 'LABEL', 'MAINTAINER', 'EXPOSE', 'ENV', 'ADD', 'COPY', 'ENTRYPOINT',
  'VOLUME', 'USER', 'WORKDIR', 'ARG', 'ONBUILD', 'STOPSIGNAL', 'HEALTHCHECK', 'SHELL',
]);

const FLAGS: Record<string, readonly string[]> = {
  FROM: ['platform'],
  RUN: ['mount', 'network', 'security'],
  COPY: ['from', 'chown', 'chmod', 'link', 'parents', 'exclude'],
  ADD: ['chown', 'chmod', 'link', 'checksum', 'keep-git-dir', 'exclude'],
  HEALTHCHECK: ['interval', 'timeout', 'start-period', 'start-interval', 'retries'],
};

/** Flags given without a value mean true (BuildKit's BoolFlag); `=true`/`=false` also work. */
const BOOL_FLAGS = new Set(['link', 'parents', 'keep-git-dir']);
/** Flags that may be given more than once; their values are joined with newlines. */
const MULTI_FLAGS = new Set(['mount', 'exclude']);

/** Parses a Dockerfile's text. `file` names it in error messages (`Dockerfile:3: ...`). */
export function parseDockerfile(text: string, file = 'Dockerfile'): Dockerfile {
  checkSyntaxDirective(readDirectives(text), file);
  const ast = DockerfileParser.parse(text);
  const escape = ast.getEscapeCharacter();
  const lines = text.split(/\r?\n/);
  const steps: Step[] = [];
  const warnings: string[] = [];
  for (const ins of ast.getInstructions()) {
    const start = ins.getRange().start.line;
    const end = ins.getRange().end.line;
    const joined = joinLogicalLine(lines, start, end, escape);
    if (joined.emptyContinuation) {
      warnings.push(`Empty continuation line found in:\n    ${joined.text}`);
    }
    const base: StepBase = { line: start + 1, endLine: joined.lastLine + 1, text: joined.text };
    const heredocBodies = joined.lastLine < end ? lines.slice(joined.lastLine + 1, end + 1) : [];
    steps.push(parseInstruction(base, file, escape, heredocBodies));
  }
  return { file, escape, steps, warnings };
}

/**
 * Joins continuation lines as Docker's parser does: the escape character at the end of a
 * line (spaces after it allowed) is removed with the newline, comment lines and blank lines
 * inside a continuation are dropped, and the next line's leading whitespace is kept.
 */
function joinLogicalLine(lines: string[], start: number, end: number, escape: string): {
  text: string; lastLine: number; emptyContinuation: boolean;
} {
  const cont = new RegExp(`${escapeRegExp(escape)}[ \\t]*$`);
  let text = '';
  let emptyContinuation = false;
  let i = start;
  for (; i <= Math.max(end, start) && i < lines.length; i++) {
    const raw = lines[i]!;
    if (i > start) {
      if (/^\s*#/.test(raw)) continue;
      if (raw.trim() === '') {
        emptyContinuation = true;
        continue;
      }
    }
    const m = cont.exec(raw);
    if (m && !(i === lines.length - 1)) {
      text += raw.slice(0, m.index);
      continue;
    }
    text += raw;
    break;
  }
  return { text: text.trim(), lastLine: Math.min(i, lines.length - 1), emptyContinuation };
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Splits `KEYWORD rest`. */
function splitKeyword(text: string): [string, string] {
  const m = /^(\S+)\s*([\s\S]*)$/.exec(text);
  return m ? [m[1]!, m[2]!] : [text, ''];
}

/** Parses leading `--name[=value]` flags as Docker's BFlags does. */
function extractFlags(rest: string, keyword: string, file: string, line: number): { flags: Map<string, string>; rest: string } {
  const flags = new Map<string, string>();
  const allowed = FLAGS[keyword] ?? [];
  let r = rest;
  for (;;) {
    const m = /^--([A-Za-z0-9-]*)(?:=(\S*))?(?:\s+|$)/.exec(r);
    if (!m) break;
    const name = m[1]!;
    if (name === '') break; // a bare `--` ends flags
    if (!allowed.includes(name)) throw dockerfileError('ERR_DOCKERFILE_SYNTAX', file, line, `Unknown flag: ${name}`);
    const bool = BOOL_FLAGS.has(name);
    if (m[2] === undefined && !bool) {
      throw dockerfileError('ERR_DOCKERFILE_SYNTAX', file, line, `Missing a value on flag: ${name}`);
    }
    if (bool && m[2] !== undefined && !/^(true|false)$/i.test(m[2])) {
      throw dockerfileError('ERR_DOCKERFILE_SYNTAX', file, line, `expecting boolean value for flag ${name}, not: ${m[2]}`);
    }
    const many = MULTI_FLAGS.has(name);
    if (flags.has(name) && !many) {
      throw dockerfileError('ERR_DOCKERFILE_SYNTAX', file, line, `Duplicate flag specified: ${name}`);
    }
    const value = bool ? (m[2] ?? 'true').toLowerCase() : m[2]!;
    flags.set(name, many && flags.has(name) ? `${flags.get(name)}\n${value}` : value);
    r = r.slice(m[0].length);
  }
  return { flags, rest: r };
}

/** Docker's parseMaybeJSON: a JSON array of strings is the exec form; anything else is shell form. */
export function parseMaybeJson(rest: string): CommandForm {
  const t = rest.trim();
  if (t.startsWith('[')) {
    try {
      const v: unknown = JSON.parse(t);
      if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return { form: 'exec', exec: v as string[] };
    } catch {
      // not JSON: shell form, as Docker does
    }
  }
  return { form: 'shell', shell: t };
}

/** JSON array, or words split on whitespace only (Docker's parseStringsWhitespaceDelimited). */
function jsonOrWhitespaceList(rest: string): { list: string[]; json: boolean } {
  const f = parseMaybeJson(rest);
  if (f.form === 'exec') return { list: f.exec, json: true };
  return { list: rest.trim().split(/[ \t\r\n]+/).filter((s) => s !== ''), json: false };
}

/** Parses `<<EOF`, `<<-EOF`, `<<"EOF"` markers of a line and their bodies. */
function parseHeredocs(rest: string, bodies: string[]): { heredocs: Heredoc[]; consumed: number } {
  const markers = [...rest.matchAll(/<<(-?)(["']?)([A-Za-z0-9_.-]+)\2/g)];
  const heredocs: Heredoc[] = [];
  let i = 0;
  for (const m of markers) {
    const name = m[3]!;
    const chomp = m[1] === '-';
    const content: string[] = [];
    while (i < bodies.length) {
      const l = bodies[i++]!;
      if ((chomp ? l.replace(/^\t+/, '') : l) === name) break;
      content.push(chomp ? l.replace(/^\t+/, '') : l);
    }
    heredocs.push({ name, quoted: m[2] !== '', chomp, content: content.length ? content.join('\n') + '\n' : '' });
  }
  return { heredocs, consumed: i };
}

const DURATION_UNITS: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };

/** Parses a Go duration (`30s`, `1m30s`, `500ms`) into nanoseconds. */
export function parseGoDuration(s: string): number | undefined {
  if (s === '0') return 0;
  const re = /([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s)) !== null) {
    total += Number.parseFloat(m[1]!) * DURATION_UNITS[m[2]!]!;
    pos = re.lastIndex;
  }
  return pos === s.length && pos > 0 ? Math.round(total) : undefined;
}

/** What an instruction's parser gets: the step so far, its text after the flags, and its flags. */
interface InstructionInput {
  base: StepBase;
  keyword: string;
  rest: string;
  flags: Map<string, string>;
  file: string;
  escape: string;
  heredocBodies: string[];
  fail: (detail: string) => Error;
  /** Fails unless the instruction has at least `min` (default 1) arguments. */
  needArgs: (min?: number) => void;
}

type InstructionParser = (i: InstructionInput) => Step;

function parseFrom({ base, rest, flags, fail }: InstructionInput): Step {
  const words = rest.trim().split(/\s+/).filter(Boolean);
  if (words.length !== 1 && !(words.length === 3 && words[1]!.toUpperCase() === 'AS')) {
    throw fail('FROM requires either one or three arguments');
  }
  const stageName = words[2]?.toLowerCase();
  if (stageName !== undefined && !/^[a-z][a-z0-9-_.]*$/.test(stageName)) throw fail(`invalid name for build stage: "${words[2]}", name can't start with a number or contain symbols`);
  return { ...base, kind: 'FROM', image: words[0]!, stageName, platform: flags.get('platform') };
}

function parseRun({ base, rest, flags, heredocBodies, needArgs, fail }: InstructionInput): Step {
  needArgs();
  const { heredocs } = parseHeredocs(rest, heredocBodies);
  const mounts = (flags.get('mount') ?? '').split('\n').filter(Boolean);
  // Keys and types are checked now (values may hold variables, expanded when the step runs).
  for (const m of mounts) checkRunMount(m, fail);
  const security = parseSecurity(flags.get('security'), fail);
  const run = { ...base, kind: 'RUN' as const, mounts, network: flags.get('network'), security, heredocs };
  if (heredocs.length > 0) return { ...run, form: 'shell', shell: rest.trim() };
  return { ...run, ...parseMaybeJson(rest) };
}

function parseCmdEntrypoint({ base, keyword, rest }: InstructionInput): Step {
  return { ...base, kind: keyword as 'CMD' | 'ENTRYPOINT', ...parseMaybeJson(rest) };
}

function parseShell({ base, rest, fail }: InstructionInput): Step {
  const f = parseMaybeJson(rest);
  if (f.form !== 'exec' || f.exec.length === 0) throw fail('SHELL requires the arguments to be in JSON form');
  return { ...base, kind: 'SHELL', shell: f.exec };
}

function parseEnvLabel({ base, keyword, rest, escape, fail }: InstructionInput): Step {
  return { ...base, kind: keyword as 'ENV' | 'LABEL', pairs: parseNameVal(rest, keyword, escape, fail) };
}

function parseMaintainer({ base, rest, needArgs }: InstructionInput): Step {
  needArgs();
  return { ...base, kind: 'MAINTAINER', name: rest.trim() };
}

function parseExpose({ base, rest, needArgs }: InstructionInput): Step {
  needArgs();
  return { ...base, kind: 'EXPOSE', ports: rest.trim().split(/\s+/) };
}

function parseVolume({ base, rest, fail, needArgs }: InstructionInput): Step {
  needArgs();
  const { list } = jsonOrWhitespaceList(rest);
  if (list.some((p) => p.trim() === '')) throw fail('VOLUME specified can not be an empty string');
  return { ...base, kind: 'VOLUME', paths: list };
}

function parseUser({ base, rest, needArgs }: InstructionInput): Step {
  needArgs();
  return { ...base, kind: 'USER', user: rest.trim() };
}

function parseWorkdir({ base, rest, needArgs }: InstructionInput): Step {
  needArgs();
  return { ...base, kind: 'WORKDIR', path: rest.trim() };
}

function parseStopsignal({ base, rest, needArgs }: InstructionInput): Step {
  needArgs();
  return { ...base, kind: 'STOPSIGNAL', signal: rest.trim() };
}

function parseArg({ base, rest, escape, fail, needArgs }: InstructionInput): Step {
  needArgs();
  const args = splitWords(rest.trim(), escape).map((w) => {
    const eq = w.indexOf('=');
    return eq < 0 ? { name: w, value: undefined } : { name: w.slice(0, eq), value: w.slice(eq + 1) };
  });
  for (const a of args) if (a.name === '') throw fail('ARG names can not be blank');
  return { ...base, kind: 'ARG', args };
}

function parseOnbuild({ base, rest, file, escape, fail }: InstructionInput): Step {
  const [trig] = splitKeyword(rest.trim());
  const t = trig.toUpperCase();
  if (t === '') throw fail('ONBUILD requires at least one argument');
  if (t === 'ONBUILD') throw fail("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
  if (t === 'FROM' || t === 'MAINTAINER') throw fail(`${t} isn't allowed as an ONBUILD trigger`);
  parseInstruction({ ...base, text: rest.trim() }, file, escape, []); // validate the trigger now
  return { ...base, kind: 'ONBUILD', trigger: rest.trim() };
}

function parseHealthcheckInstruction({ base, rest, flags, fail }: InstructionInput): Step {
  return parseHealthcheck(base, rest, flags, fail);
}

function parseCopyAdd({ base, keyword, rest, flags, heredocBodies, file, fail }: InstructionInput): Step {
  const { heredocs } = parseHeredocs(rest, heredocBodies);
  const { list } = jsonOrWhitespaceList(rest);
  if (list.length < 2) throw fail(`${keyword} requires at least two arguments`);
  const step: CopyStep = {
    ...base, kind: keyword as 'COPY' | 'ADD', sources: list.slice(0, -1), dest: list[list.length - 1]!,
    from: flags.get('from'), chown: flags.get('chown'), chmod: flags.get('chmod'), link: flags.get('link') === 'true', heredocs,
    checksum: flags.get('checksum'), keepGitDir: flags.get('keep-git-dir') === 'true', parents: flags.get('parents') === 'true',
    exclude: (flags.get('exclude') ?? '').split('\n').filter((x) => x !== ''),
  };
  checkCopyFlags(step, file);
  return step;
}

const PARSERS: Record<string, InstructionParser> = {
  FROM: parseFrom,
  RUN: parseRun,
  CMD: parseCmdEntrypoint,
  ENTRYPOINT: parseCmdEntrypoint,
  SHELL: parseShell,
  ENV: parseEnvLabel,
  LABEL: parseEnvLabel,
  MAINTAINER: parseMaintainer,
  EXPOSE: parseExpose,
  VOLUME: parseVolume,
  USER: parseUser,
  WORKDIR: parseWorkdir,
  STOPSIGNAL: parseStopsignal,
  ARG: parseArg,
  ONBUILD: parseOnbuild,
  HEALTHCHECK: parseHealthcheckInstruction,
  COPY: parseCopyAdd,
  ADD: parseCopyAdd,
};

function parseInstruction(base: StepBase, file: string, escape: string, heredocBodies: string[]): Step {
  const [word, rest0] = splitKeyword(base.text);
  const keyword = word.toUpperCase();
  const line = base.line;
  const fail = (detail: string) => dockerfileError('ERR_DOCKERFILE_SYNTAX', file, line, detail);
  const parser = PARSERS[keyword];
  if (!KNOWN.has(keyword) || !parser) throw fail(`unknown instruction: ${word.toUpperCase()}`);
  const { flags, rest } = extractFlags(rest0, keyword, file, line);
  const needArgs = (min = 1) => {
    if (rest.trim().split(/\s+/).filter(Boolean).length < min) throw fail(`${keyword} requires at least ${min === 1 ? 'one argument' : `${min} arguments`}`);
  };
  return parser({ base, keyword, rest, flags, file, escape, heredocBodies, fail, needArgs });
}


function parseNameVal(rest: string, keyword: string, escape: string, fail: (d: string) => Error): Array<[string, string]> {
  const t = rest.trim();
  if (t === '') throw fail(`${keyword} requires at least one argument`);
  const words = splitWords(t, escape);
  if (!words[0]!.includes('=')) {
    // legacy `ENV key value with spaces`: everything after the first whitespace is the value
    const m = /^(\S+)\s+([\s\S]*)$/.exec(t);
    if (!m) throw fail(`${keyword} must have two arguments`);
    return [[m[1]!, m[2]!]];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq < 0) throw fail(`Syntax error - can't find = in "${w}". Must be of the form: name=value`);
    if (eq === 0) throw fail(`${keyword} names can not be blank`);
    return [w.slice(0, eq), w.slice(eq + 1)] as [string, string];
  });
}

function parseHealthcheck(base: StepBase, rest: string, flags: Map<string, string>, fail: (d: string) => Error): Step {
  const [typ, cmdRest] = splitKeyword(rest.trim());
  const t = typ.toUpperCase();
  const dur = (name: string): number | undefined => {
    const v = flags.get(name);
    if (v === undefined) return undefined;
    const ns = parseGoDuration(v);
    if (ns === undefined) throw fail(`time: invalid duration "${v}"`);
    if (ns !== 0 && ns < 1e6) throw fail(`Interval "${name}" cannot be less than 1ms`);
    return ns;
  };
  if (t === 'NONE') {
    if (cmdRest.trim() !== '') throw fail('HEALTHCHECK NONE takes no arguments');
    if (flags.size > 0) throw fail('HEALTHCHECK NONE takes no flags');
    return { ...base, kind: 'HEALTHCHECK', test: ['NONE'], interval: undefined, timeout: undefined, startPeriod: undefined, startInterval: undefined, retries: undefined };
  }
  if (t !== 'CMD') throw fail(`Unknown type "${typ}" in HEALTHCHECK (try CMD)`);
  if (cmdRest.trim() === '') throw fail('Missing command after HEALTHCHECK CMD');
  const f = parseMaybeJson(cmdRest);
  const test = f.form === 'exec' ? ['CMD', ...f.exec] : ['CMD-SHELL', f.shell];
  let retries: number | undefined;
  const r = flags.get('retries');
  if (r !== undefined) {
    retries = Number(r);
    if (!Number.isInteger(retries) || retries < 0) throw fail(`--retries must be a non-negative integer`);
  }
  return {
    ...base, kind: 'HEALTHCHECK', test, interval: dur('interval'), timeout: dur('timeout'),
    startPeriod: dur('start-period'), startInterval: dur('start-interval'), retries,
  };
}
