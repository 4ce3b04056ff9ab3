import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { SlipwayError } from '../errors.js';
import { shortId } from '../store/layout.js';
import { resolveImage } from '../store/graph.js';
import { updateRepositories } from '../store/repositories.js';
import { parseReference } from '../store/reference.js';
import { listImages, imageHistory, inspectImage } from '../store/inspect.js';
import { removeImage } from '../store/remove.js';
import { humanAgo, humanSize, table } from './format.js';
import { checkOutputPath, openInput, openOutput } from './files.js';
import type { CommandEnv } from './command-env.js';
import { renderRows } from './format-template.js';
import { execTemplate, parseTemplate } from './go-template.js';
import { HISTORY_HEADER, IMAGE_HEADER, historyRow, imageRow } from './image-format.js';

/** The local image verbs: images, tag, rmi, history, inspect, import, save, load. */
function out(s: string): void {
  process.stdout.write(s);
}

export async function images(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { all: { type: 'boolean', short: 'a' }, quiet: { type: 'boolean', short: 'q' }, format: { type: 'string' } }, allowPositionals: true });
  let rows = await listImages(layout, values.all ?? false);
  if (positionals[0]) {
    const want = positionals[0];
    rows = rows.filter((r) => r.repository === want || `${r.repository}:${r.tag}` === want);
  }
  if (values.quiet) {
    out([...new Set(rows.map((r) => shortId(r.id)))].map((s) => `${s}\n`).join(''));
  } else if (values.format === 'json') {
    for (const r of rows) out(`${JSON.stringify({ Repository: r.repository, Tag: r.tag, ID: shortId(r.id), CreatedAt: r.created, Size: r.size, VirtualSize: r.virtualSize })}\n`);
  } else if (values.format !== undefined && values.format.trim() !== 'table') {
    out(renderRows(values.format, rows.map(imageRow), IMAGE_HEADER));
  } else {
    out(table([['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'], ...rows.map((r) => [r.repository, r.tag, shortId(r.id), humanAgo(r.created), `${humanSize(r.size)} (virtual ${humanSize(r.virtualSize)})`])]));
  }
  return 0;
}

export async function tag(args: string[], { layout }: CommandEnv): Promise<number> {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true });
  if (positionals.length !== 2) throw new SlipwayError('ERR_USAGE', '"slipway tag" requires exactly 2 arguments: SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]');
  const id = await resolveImage(layout, positionals[0]!);
  const ref = parseReference(positionals[1]!);
  await updateRepositories(layout, (r) => { (r.Repositories[ref.repository] ??= {})[ref.tag] = id; });
  return 0;
}

export async function rmi(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { force: { type: 'boolean', short: 'f' } }, allowPositionals: true });
  if (positionals.length === 0) throw new SlipwayError('ERR_USAGE', '"slipway rmi" requires at least 1 argument');
  let status = 0;
  for (const ref of positionals) {
    try {
      for (const e of await removeImage(layout, ref, values.force ?? false)) {
        out('Untagged' in e ? `Untagged: ${e.Untagged}\n` : `Deleted: ${e.Deleted}\n`);
      }
    } catch (e) {
      if (!(e instanceof SlipwayError)) throw e;
      process.stderr.write(`Error response from daemon: ${e.message}\n`);
      status = 1;
    }
  }
  return status;
}

export async function history(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { 'no-trunc': { type: 'boolean' }, quiet: { type: 'boolean', short: 'q' }, format: { type: 'string' } }, allowPositionals: true });
  if (positionals.length !== 1) throw new SlipwayError('ERR_USAGE', '"slipway history" requires exactly 1 argument');
  const rows = await imageHistory(layout, await resolveImage(layout, positionals[0]!));
  if (values.format === 'json') {
    for (const r of rows) out(`${JSON.stringify(r)}\n`);
    return 0;
  }
  if (values.quiet) {
    out(rows.map((r) => `${values['no-trunc'] ? r.id : shortId(r.id)}\n`).join(''));
    return 0;
  }
  if (values.format !== undefined && values.format.trim() !== 'table') {
    out(renderRows(values.format, rows.map((r) => historyRow(r, values['no-trunc'] ?? false)), HISTORY_HEADER));
    return 0;
  }
  const trunc = (s: string) => (values['no-trunc'] || s.length <= 45 ? s : `${s.slice(0, 44)}…`);
  out(table([['IMAGE', 'CREATED', 'CREATED BY', 'SIZE', 'COMMENT'], ...rows.map((r) => [values['no-trunc'] ? r.id : shortId(r.id), humanAgo(r.created), trunc(r.createdBy), humanSize(r.size), r.comment])]));
  return 0;
}

export async function inspect(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { format: { type: 'string', short: 'f' } }, allowPositionals: true });
  if (positionals.length === 0) throw new SlipwayError('ERR_USAGE', '"slipway inspect" requires at least 1 argument');
  // A bad template is a usage error before any image is read.
  if (values.format !== undefined && values.format !== 'json') parseTemplate(values.format);
  const docs: unknown[] = [];
  let status = 0;
  for (const ref of positionals) {
    try {
      docs.push(JSON.parse(JSON.stringify(await inspectImage(layout, await resolveImage(layout, ref)))) as unknown);
    } catch (e) {
      if (!(e instanceof SlipwayError)) throw e;
      process.stderr.write(`Error: No such image: ${ref}\n`);
      status = 1;
    }
  }
  if (values.format === undefined) out(`${JSON.stringify(docs, null, 4)}\n`);
  else {
    // As docker inspect: the template runs once per image; `json` is `{{json .}}`.
    const nodes = parseTemplate(values.format === 'json' ? '{{json .}}' : values.format.replace(/\\t/g, '\t').replace(/\\n/g, '\n'));
    for (const d of docs) out(`${execTemplate(nodes, d)}\n`);
  }
  return status;
}

export async function importCmd(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { change: { type: 'string', short: 'c', multiple: true }, message: { type: 'string', short: 'm' } }, allowPositionals: true });
  if (positionals.length < 1 || positionals.length > 2) throw new SlipwayError('ERR_USAGE', '"slipway import" requires 1 or 2 arguments: file|- [REPOSITORY[:TAG]]');
  const file = positionals[0]!;
  const config = (await import('./changes.js')).configFromChanges(values.change ?? []);
  const input = file === '-' ? process.stdin : await openInput(file);
  const { importImage } = await import('../registry/archive.js');
  const id = await importImage(layout, input, { config, ...(positionals[1] ? { tag: positionals[1] } : {}), comment: values.message ?? 'Imported from -' });
  out(`sha256:${id}\n`);
  return 0;
}

export async function save(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { output: { type: 'string', short: 'o' }, format: { type: 'string' } }, allowPositionals: true });
  if (positionals.length === 0) throw new SlipwayError('ERR_USAGE', '"slipway save" requires at least 1 argument');
  const saveImages = (await import('./registry-cmds.js')).saveWriter(values.format);
  if (!values.output && process.stdout.isTTY) throw new SlipwayError('ERR_USAGE', 'cowardly refusing to save to a terminal. Use the -o flag or redirect');
  for (const r of positionals) await resolveImage(layout, r);
  if (values.output) {
    await checkOutputPath(values.output);
    const tmp = `${values.output}.tmp-${process.pid}`;
    try {
      await saveImages(layout, positionals, await openOutput(tmp));
      fs.renameSync(tmp, values.output);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  } else {
    try {
      await saveImages(layout, positionals, process.stdout);
    } catch (e) {
      // The reader went away (| head): stop quietly, with the status of a program SIGPIPE ended.
      if ((e as NodeJS.ErrnoException).code === 'EPIPE') return 141;
      throw e;
    }
  }
  return 0;
}

export async function load(args: string[], { layout }: CommandEnv): Promise<number> {
  const { values } = parseArgs({ args, options: { input: { type: 'string', short: 'i' }, quiet: { type: 'boolean', short: 'q' } } });
  if (!values.input && process.stdin.isTTY) throw new SlipwayError('ERR_USAGE', 'requested load from stdin, but stdin is empty');
  const input = values.input ? await openInput(values.input) : process.stdin;
  const { loadImages } = await import('../registry/archive.js');
  for (const r of await loadImages(layout, input)) {
    if (r.tags.length === 0) out(`Loaded image ID: sha256:${r.id}\n`);
    for (const t of r.tags) out(`Loaded image: ${t}\n`);
  }
  return 0;
}

